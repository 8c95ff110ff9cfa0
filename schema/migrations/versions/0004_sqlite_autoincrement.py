"""Never reuse ids of users, roles, API keys and audit events on SQLite.

SQLite hands out max(id) + 1 for an INTEGER PRIMARY KEY, so deleting the
newest user would let the next one inherit its id, and with it the audit
history and any credential that names the id. AUTOINCREMENT forbids reuse.
PostgreSQL sequences never reuse ids, so nothing changes there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("users", "roles", "api_keys", "audit_events")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": False}
        ):
            pass

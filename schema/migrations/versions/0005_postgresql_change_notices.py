"""Notify listeners when sign-in state changes on PostgreSQL.

Every statement on users, roles, their links, sessions or API keys sends a
notice on the `fieldguard_auth_changed` channel when its transaction
commits. Each service process listens, and keeps sign-in state it has read
until the next notice. Triggers catch every writer: the service, the
command line and any other client of the database. SQLite uses a marker
file instead, and nothing changes there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Kept equal to schema.revocation.WATCHED_TABLES and CHANNEL; a migration
# keeps its own copy, so that later changes there do not rewrite history.
TABLES = ("users", "roles", "user_roles", "role_permissions", "sessions", "api_keys")
CHANNEL = "fieldguard_auth_changed"
FUNCTION = "fieldguard_notify_auth_changed"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '');
            RETURN NULL;
        END
        $$
        """
    )
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {CHANNEL} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP TRIGGER {CHANNEL} ON {table}")
    op.execute(f"DROP FUNCTION {FUNCTION}()")

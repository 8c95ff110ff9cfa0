"""Re-encryption of sealed columns under the active data key."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema.audit import CLIENT_IP_CONTEXT, USER_AGENT_CONTEXT
from schema.crypto import DataCipher
from schema.sessions import (
    CLIENT_IP_CONTEXT as SESSION_IP_CONTEXT,
)
from schema.sessions import (
    GRACE_TOKEN_CONTEXT,
)
from schema.sessions import (
    USER_AGENT_CONTEXT as SESSION_AGENT_CONTEXT,
)
from schema.tables import AuditEvent, Base, Session, User
from schema.users import DISPLAY_NAME_CONTEXT, EMAIL_CONTEXT

# Sealed columns by table: (attribute, context that binds values to it).
SEALED_COLUMNS: dict[type[Base], tuple[tuple[str, str], ...]] = {
    User: (
        ("email_sealed", EMAIL_CONTEXT),
        ("display_name_sealed", DISPLAY_NAME_CONTEXT),
    ),
    AuditEvent: (
        ("client_ip_sealed", CLIENT_IP_CONTEXT),
        ("user_agent_sealed", USER_AGENT_CONTEXT),
    ),
    Session: (
        ("client_ip_sealed", SESSION_IP_CONTEXT),
        ("user_agent_sealed", SESSION_AGENT_CONTEXT),
        ("grace_token_sealed", GRACE_TOKEN_CONTEXT),
    ),
}


async def reseal_all(
    sessions: async_sessionmaker[AsyncSession], cipher: DataCipher, *, batch_size: int
) -> dict[str, int]:
    """Move every sealed value to the active key, one short transaction per batch.

    The service keeps running: each batch locks only its own rows, and a
    value is readable under its old key until its batch commits.

    Returns:
        How many rows were rewritten, by table name.
    """
    counts: dict[str, int] = {}
    for table, columns in SEALED_COLUMNS.items():
        counts[table.__tablename__] = await _reseal_table(
            sessions, cipher, table, columns, batch_size=batch_size
        )
    return counts


async def _reseal_table(
    sessions: async_sessionmaker[AsyncSession],
    cipher: DataCipher,
    table: type[Base],
    columns: tuple[tuple[str, str], ...],
    *,
    batch_size: int,
) -> int:
    rewritten = 0
    last_id: object = None
    primary_key = table.id  # type: ignore[attr-defined]
    while True:
        async with sessions() as session, session.begin():
            after = primary_key > last_id if last_id is not None else True
            rows = list(
                await session.scalars(
                    select(table)
                    .where(after)
                    .order_by(primary_key)
                    .limit(batch_size)
                    .with_for_update()
                )
            )
            if not rows:
                return rewritten
            for row in rows:
                stale = False
                for attribute, context in columns:
                    value = getattr(row, attribute)
                    if not cipher.is_current(value):
                        setattr(row, attribute, cipher.reseal(value, context=context))
                        stale = True
                rewritten += stale
            last_id = rows[-1].id

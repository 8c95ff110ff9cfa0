"""The audit log: security-relevant actions, stored with personal data sealed."""

import asyncio
import json
import logging
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema.crypto import DataCipher
from schema.tables import AuditEvent, utc_now

logger = logging.getLogger(__name__)

CLIENT_IP_CONTEXT = "audit_events.client_ip"
USER_AGENT_CONTEXT = "audit_events.user_agent"
MAX_USER_AGENT_LENGTH = 512
MAX_TARGET_LENGTH = 64


def _printable(text: str) -> str:
    """Replace control and format characters, so that a target id read from
    client input cannot forge lines or reorder text where it is shown."""
    return "".join(
        "?" if unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} else ch
        for ch in text
    )


@dataclass(frozen=True, slots=True)
class Actor:
    """The person or program acting, and from where. Any field may be unknown."""

    user_id: int | None = None
    username: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit event with its personal data opened."""

    id: int
    occurred_at: datetime
    actor_id: int | None
    actor_username: str | None
    action: str
    target_type: str | None
    target_id: str | None
    outcome: str
    client_ip: str | None
    user_agent: str | None
    request_id: str | None
    details: dict[str, object]


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor_id: int | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def record_event(
    session: AsyncSession,
    cipher: DataCipher,
    *,
    flush: bool = True,
    **event: Any,
) -> None:
    """Add an audit event to the session; it is written with the transaction.

    `event` takes the arguments of `event_values`; its `details` must contain no
    password, token or personal data.
    """
    session.add(AuditEvent(**event_values(cipher, **event)))
    if flush:
        await session.flush()


def event_values(
    cipher: DataCipher,
    *,
    actor: Actor,
    action: str,
    outcome: str,
    target_type: str | None = None,
    target_id: object = None,
    details: Mapping[str, object] | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """Return the column values of an audit event, personal data sealed."""
    user_agent = actor.user_agent[:MAX_USER_AGENT_LENGTH] if actor.user_agent else None
    target = (
        None if target_id is None else _printable(str(target_id))[:MAX_TARGET_LENGTH]
    )
    return {
        "actor_id": actor.user_id,
        "actor_username": actor.username,
        "action": action,
        "target_type": target_type,
        "target_id": target,
        "outcome": outcome,
        "client_ip_sealed": cipher.seal_optional(
            actor.client_ip, context=CLIENT_IP_CONTEXT
        ),
        "user_agent_sealed": cipher.seal_optional(
            user_agent, context=USER_AGENT_CONTEXT
        ),
        "request_id": actor.request_id,
        "details": json.dumps(dict(details), sort_keys=True) if details else None,
        "occurred_at": occurred_at if occurred_at is not None else utc_now(),
    }


class AuditBuffer:
    """Audit events written in batches, off the request path.

    Prediction requests are many and each must leave an event; writing one
    transaction per request would cost more than the prediction. Events
    keep the time they happened and reach the database within `max_delay`
    seconds, in one transaction per batch. A failed write is retried with
    the next batch. When `max_pending` events are waiting, because the
    database has been down for a long time, the oldest are dropped and an
    error is logged.
    `close()` writes what is left, at shutdown.
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        cipher: DataCipher,
        *,
        max_delay: float = 0.2,
        max_pending: int = 100_000,
    ) -> None:
        self._sessions = session_factory
        self._cipher = cipher
        self.max_delay = max_delay
        self.max_pending = max_pending
        self._pending: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def add(self, **event: Any) -> None:
        """Queue one event; arguments as for `record_event`."""
        event.setdefault("occurred_at", utc_now())
        self._pending.append(event)
        if len(self._pending) > self.max_pending:
            dropped = len(self._pending) - self.max_pending
            del self._pending[:dropped]
            logger.error(
                "Dropped %d audit events: the database is not writable", dropped
            )
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._write_soon())

    async def _write_soon(self) -> None:
        delay = self.max_delay
        while self._pending:
            await asyncio.sleep(delay)
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - logged in flush; retried here
                delay = min(delay * 2, 5.0)

    async def flush(self) -> None:
        """Write every queued event now."""
        async with self._lock:
            events, self._pending = self._pending, []
            if not events:
                return
            try:
                rows = [event_values(self._cipher, **event) for event in events]
                async with self._sessions() as session, session.begin():
                    # One bulk INSERT: an ORM object per event cost about a
                    # quarter of the CPU of the request that made it.
                    await session.execute(insert(AuditEvent), rows)
            except Exception:
                logger.exception(
                    "Writing %d audit events failed; retrying", len(events)
                )
                self._pending[:0] = events
                raise

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        try:
            await self.flush()
        except Exception:  # noqa: BLE001 - logged in flush
            logger.error("Lost %d audit events at shutdown", len(self._pending))


async def list_events(
    session: AsyncSession,
    cipher: DataCipher,
    *,
    where: AuditFilter,
    limit: int,
    offset: int,
) -> tuple[list[AuditRecord], int]:
    """Return one page of events, newest first, and the total that match."""
    conditions = []
    if where.actor_id is not None:
        conditions.append(AuditEvent.actor_id == where.actor_id)
    if where.action is not None:
        conditions.append(AuditEvent.action == where.action)
    if where.target_type is not None:
        conditions.append(AuditEvent.target_type == where.target_type)
    if where.target_id is not None:
        conditions.append(AuditEvent.target_id == where.target_id)
    if where.since is not None:
        conditions.append(AuditEvent.occurred_at >= where.since)
    if where.until is not None:
        conditions.append(AuditEvent.occurred_at < where.until)

    total = await session.scalar(
        select(func.count()).select_from(AuditEvent).where(*conditions)
    )
    rows = await session.scalars(
        select(AuditEvent)
        .where(*conditions)
        .order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [_open(row, cipher) for row in rows], int(total or 0)


def _open(row: AuditEvent, cipher: DataCipher) -> AuditRecord:
    return AuditRecord(
        id=row.id,
        occurred_at=row.occurred_at,
        actor_id=row.actor_id,
        actor_username=row.actor_username,
        action=row.action,
        target_type=row.target_type,
        target_id=row.target_id,
        outcome=row.outcome,
        client_ip=cipher.open_optional(row.client_ip_sealed, context=CLIENT_IP_CONTEXT),
        user_agent=cipher.open_optional(
            row.user_agent_sealed, context=USER_AGENT_CONTEXT
        ),
        request_id=row.request_id,
        details=json.loads(row.details) if row.details else {},
    )

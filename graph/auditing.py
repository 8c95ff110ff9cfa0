"""Running a change in a transaction and recording it in the audit log."""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from graph.context import Context
from schema.audit import record_event
from schema.errors import DomainError, PermissionDenied

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class AuditNote:
    """Facts a change records about itself for its audit event."""

    target_id: object = None
    details: dict[str, object] = field(default_factory=dict)


async def audited(
    context: Context,
    *,
    action: str,
    target_type: str,
    target_id: object = None,
    change: Callable[[AsyncSession, AuditNote], Awaitable[T]],
) -> T:
    """Run `change` in a transaction that also writes its audit event.

    A change that fails with a domain error is rolled back, and its failure
    is recorded in a transaction of its own before the error propagates.
    """
    services = context.services
    note = AuditNote(target_id=target_id)
    try:
        async with services.transaction() as session:
            result = await change(session, note)
            await record_event(
                session,
                services.cipher,
                actor=context.actor(),
                action=action,
                outcome="success",
                target_type=target_type,
                target_id=note.target_id,
                details=note.details,
            )
        return result
    except DomainError as error:
        outcome = "denied" if isinstance(error, PermissionDenied) else "failure"
        async with services.transaction() as session:
            await record_event(
                session,
                services.cipher,
                actor=context.actor(),
                action=action,
                outcome=outcome,
                target_type=target_type,
                target_id=note.target_id,
                details={"error": type(error).__name__},
            )
        logger.info(
            "Audited change %s: action=%s target=%s:%r actor=%s request_id=%s",
            outcome,
            action,
            target_type,
            note.target_id,
            context.principal.user_id if context.principal else None,
            context.request_id,
        )
        raise

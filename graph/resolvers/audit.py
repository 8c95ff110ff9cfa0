"""The audit log query."""

import strawberry
from strawberry.types import Info

from graph.context import Context
from graph.inputs import AuditEventFilter
from graph.permissions import requires
from graph.resolvers.pages import PageLimit, check_page, parse_id
from graph.types import AuditEvent, AuditEventPage
from schema.audit import AuditFilter, list_events
from schema.catalogue import Permission


@strawberry.type
class AuditQuery:
    @strawberry.field(
        extensions=requires(Permission.AUDIT_READ),
        description="Audit events, newest first, one page at a time.",
    )
    async def audit_events(
        self,
        info: Info[Context, None],
        filter: AuditEventFilter | None = None,
        limit: PageLimit = None,
        offset: int = 0,
    ) -> AuditEventPage:
        context = info.context
        limit = check_page(context, limit, offset)
        # Prediction events wait in a buffer for a moment; this process's
        # own are written first, so that a reader sees them at once.
        await context.services.audit_buffer.flush()
        given = filter or AuditEventFilter()
        actor_id = parse_id(given.actor_id) if given.actor_id is not None else None
        if given.actor_id is not None and actor_id is None:
            return AuditEventPage(items=[], total_count=0)
        where = AuditFilter(
            actor_id=actor_id,
            action=given.action,
            target_type=given.target_type,
            target_id=given.target_id,
            since=given.since,
            until=given.until,
        )
        async with context.services.session_factory() as session:
            records, total = await list_events(
                session,
                context.services.cipher,
                where=where,
                limit=limit,
                offset=offset,
            )
        return AuditEventPage(
            items=[AuditEvent.from_record(record) for record in records],
            total_count=total,
        )

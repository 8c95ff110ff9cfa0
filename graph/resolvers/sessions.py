"""Signing in and out, sessions, and account locks."""

from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import Info

from graph.auditing import AuditNote, audited
from graph.context import Context, caller
from graph.errors import ClientError, ErrorCode
from graph.permissions import public, requires, signed_in
from graph.resolvers.users import load_manageable_user
from graph.signin import TokenPair, password_login, refresh
from graph.types import LoginPayload, SessionInfo, User
from schema.catalogue import Permission
from schema.errors import NotFound
from schema.sessions import list_sessions, revoke_session, revoke_user_sessions
from schema.tables import Session as SessionRow
from schema.throttle import ThrottleUnavailable
from schema.users import clear_failed_logins, username_key

TOKEN_TYPE = "Bearer"  # noqa: S105 - the HTTP authentication scheme, not a secret
SESSION_NOT_FOUND = "No session with this id."


def _payload(pair: TokenPair) -> LoginPayload:
    return LoginPayload(
        access_token=pair.access_token,
        token_type=TOKEN_TYPE,
        expires_in=pair.expires_in,
        refresh_token=pair.refresh_token,
        password_change_required=pair.password_change_required,
    )


def _own_session(info: Info[Context, None]) -> str:
    session_id = caller(info).session_id
    if session_id is None:
        raise ClientError(
            ErrorCode.BAD_USER_INPUT,
            "API keys have no session; revoke the key instead.",
            reason="API keys have no session.",
        )
    return session_id


@strawberry.type
class SessionQuery:
    @strawberry.field(
        extensions=signed_in(allow_limited=True),
        description="Your open sessions, newest first.",
    )
    async def my_sessions(self, info: Info[Context, None]) -> list[SessionInfo]:
        services = info.context.services
        principal = caller(info)
        async with services.session_factory() as session:
            found = await list_sessions(
                session,
                services.cipher,
                principal.user_id,
                now=services.clock.now(),
                policy=services.session_policy,
            )
        return [
            SessionInfo(
                user_id=item.user_id,
                id=strawberry.ID(item.id),
                created_at=item.created_at,
                last_used_at=item.last_used_at,
                expires_at=item.expires_at,
                client_ip=item.client_ip,
                user_agent=item.user_agent,
                current=item.id == principal.session_id,
            )
            for item in found
        ]


@strawberry.type
class SessionMutation:
    @strawberry.mutation(
        extensions=public(),
        description=(
            "Sign in with a username and password. Every failure, a locked "
            "account included, gives the same UNAUTHENTICATED error."
        ),
    )
    async def login(
        self,
        info: Info[Context, None],
        username: Annotated[str, strawberry.argument(description="Case-insensitive.")],
        password: str,
    ) -> LoginPayload:
        return _payload(await password_login(info.context, username, password))

    @strawberry.mutation(
        extensions=public(),
        description=(
            "Exchange a refresh token for a new access token and refresh token. "
            "A token used twice ends its session, except for a retry within a "
            "few seconds, which gets the same new pair."
        ),
    )
    async def refresh_token(
        self, info: Info[Context, None], token: str
    ) -> LoginPayload:
        return _payload(await refresh(info.context, token))

    @strawberry.mutation(
        extensions=signed_in(allow_limited=True),
        description="End the session of this access token; it stops working at once.",
    )
    async def logout(self, info: Info[Context, None]) -> bool:
        session_id = _own_session(info)
        services = info.context.services

        async def change(session: AsyncSession, note: AuditNote) -> bool:
            return await revoke_session(
                session, session_id, reason="logout", now=services.clock.now()
            )

        return await audited(
            info.context,
            action="session.logout",
            target_type="session",
            target_id=session_id,
            change=change,
        )

    @strawberry.mutation(
        extensions=signed_in(allow_limited=True),
        description="End all your sessions; returns how many were open.",
    )
    async def logout_all(self, info: Info[Context, None]) -> int:
        _own_session(info)
        principal = caller(info)
        services = info.context.services

        async def change(session: AsyncSession, note: AuditNote) -> int:
            count = await revoke_user_sessions(
                session,
                principal.user_id,
                reason="logout_all",
                now=services.clock.now(),
            )
            note.details["sessions"] = count
            return count

        return await audited(
            info.context,
            action="session.logout_all",
            target_type="user",
            target_id=principal.user_id,
            change=change,
        )

    @strawberry.mutation(
        extensions=signed_in(allow_limited=True),
        description=(
            "End one session: one of yours, or any user's with users:write. "
            "Returns whether it was open."
        ),
    )
    async def revoke_session(
        self, info: Info[Context, None], id: strawberry.ID
    ) -> bool:
        principal = caller(info)
        services = info.context.services

        async def change(session: AsyncSession, note: AuditNote) -> bool:
            row = await session.get(SessionRow, str(id)) if len(id) <= 32 else None
            allowed = row is not None and (
                row.user_id == principal.user_id
                or Permission.USERS_WRITE.value in principal.permissions
            )
            if not allowed:
                # The same response whether the session exists or belongs to
                # someone else.
                raise NotFound(SESSION_NOT_FOUND)
            if row.user_id != principal.user_id:
                await load_manageable_user(
                    session, strawberry.ID(str(row.user_id)), info
                )
            return await revoke_session(
                session, str(id), reason="revoked", now=services.clock.now()
            )

        return await audited(
            info.context,
            action="session.revoke",
            target_type="session",
            target_id=id,
            change=change,
        )

    @strawberry.mutation(
        extensions=requires(Permission.USERS_WRITE),
        description="End every session of a user; returns how many were open.",
    )
    async def revoke_user_sessions(
        self, info: Info[Context, None], user_id: strawberry.ID
    ) -> int:
        services = info.context.services

        async def change(session: AsyncSession, note: AuditNote) -> int:
            user = await load_manageable_user(session, user_id, info)
            count = await revoke_user_sessions(
                session, user.id, reason="revoked_by_admin", now=services.clock.now()
            )
            note.details["sessions"] = count
            return count

        return await audited(
            info.context,
            action="session.revoke_user",
            target_type="user",
            target_id=user_id,
            change=change,
        )

    @strawberry.mutation(
        extensions=requires(Permission.USERS_WRITE),
        description="Lift a sign-in lock of a user, temporary or permanent.",
    )
    async def unlock_user(self, info: Info[Context, None], id: strawberry.ID) -> User:
        services = info.context.services

        async def change(session: AsyncSession, note: AuditNote) -> User:
            user = await load_manageable_user(session, id, info)
            await clear_failed_logins(session, user)
            try:
                await services.throttle.reset_account(username_key(user.username))
            except ThrottleUnavailable as error:
                raise ClientError(
                    ErrorCode.SERVICE_UNAVAILABLE,
                    "The sign-in counters are unavailable right now; try again.",
                ) from error
            return User.from_row(user, services.cipher)

        return await audited(
            info.context,
            action="user.unlock",
            target_type="user",
            target_id=id,
            change=change,
        )

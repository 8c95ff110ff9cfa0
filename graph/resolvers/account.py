"""Signing in, and what users may see and change about themselves."""

import logging
from typing import Annotated

import strawberry
from strawberry.types import Info

from graph.auditing import AuditNote, audited
from graph.context import Context
from graph.errors import ClientError, ErrorCode
from graph.inputs import UpdateMeInput, kept_if_unset
from graph.permissions import public, signed_in
from graph.tokens import issue_access_token
from graph.types import LoginPayload, User
from schema.audit import Actor, record_event
from schema.errors import InvalidCredentials
from schema.users import authenticate, change_password, get_active_user, update_profile

logger = logging.getLogger(__name__)

TOKEN_TYPE = "Bearer"  # noqa: S105 - the HTTP authentication scheme, not a secret
# Longer values are not looked up at all; they can match no stored account.
MAX_LOGIN_FIELD_LENGTH = 1024


async def _current_user(info: Info[Context, None], session):  # type: ignore[no-untyped-def]
    principal = info.context.principal
    assert principal is not None  # guaranteed by the field rule
    user = await get_active_user(session, principal.user_id)
    if user is None:
        raise ClientError(
            ErrorCode.UNAUTHENTICATED, "Not authenticated: the user is gone."
        )
    return user


@strawberry.type
class AccountQuery:
    @strawberry.field(
        extensions=signed_in(), description="The signed-in user, with roles."
    )
    async def me(self, info: Info[Context, None]) -> User | None:
        services = info.context.services
        async with services.session_factory() as session:
            return User.from_row(await _current_user(info, session), services.cipher)

    @strawberry.field(
        extensions=signed_in(),
        description=(
            "Permissions the caller holds now, sorted, so that a frontend can "
            "hide what would be refused."
        ),
    )
    def my_permissions(self, info: Info[Context, None]) -> list[str]:
        principal = info.context.principal
        assert principal is not None  # guaranteed by the field rule
        return sorted(principal.permissions)


async def _record_login(
    context: Context, *, outcome: str, actor: Actor, details: dict[str, object]
) -> None:
    services = context.services
    async with services.transaction() as session:
        await record_event(
            session,
            services.cipher,
            actor=actor,
            action="login",
            outcome=outcome,
            target_type="user",
            target_id=actor.user_id,
            details=details,
        )


@strawberry.type
class AccountMutation:
    @strawberry.mutation(
        extensions=public(),
        description=(
            "Sign in with a username and password. Every failure gives the "
            "same UNAUTHENTICATED error."
        ),
    )
    async def login(
        self,
        info: Info[Context, None],
        username: Annotated[str, strawberry.argument(description="Case-insensitive.")],
        password: str,
    ) -> LoginPayload:
        context = info.context
        services = context.services
        base_actor = context.actor()
        try:
            if (
                len(username) > MAX_LOGIN_FIELD_LENGTH
                or len(password) > MAX_LOGIN_FIELD_LENGTH
            ):
                # Still costs one hash, so that the length does not shorten
                # the response.
                await services.accounts.hasher.verify("x", None)
                raise InvalidCredentials("oversized_input")
            signed_in = await authenticate(
                services.session_factory,
                services.accounts,
                username=username,
                password=password,
            )
        except InvalidCredentials as error:
            logger.info(
                "Login failed: reason=%s user_id=%s ip=%s request_id=%s",
                error.reason,
                error.user_id,
                context.client_ip,
                context.request_id,
            )
            actor = Actor(
                user_id=error.user_id,
                client_ip=base_actor.client_ip,
                user_agent=base_actor.user_agent,
                request_id=base_actor.request_id,
            )
            await _record_login(
                context,
                outcome="failure",
                actor=actor,
                details={"reason": error.reason},
            )
            raise

        user_id = signed_in.user_id
        issued = issue_access_token(services.tokens, user_id=user_id)
        logger.info(
            "Login succeeded: user_id=%s ip=%s request_id=%s",
            user_id,
            context.client_ip,
            context.request_id,
        )
        actor = Actor(
            user_id=user_id,
            username=signed_in.username,
            client_ip=base_actor.client_ip,
            user_agent=base_actor.user_agent,
            request_id=base_actor.request_id,
        )
        await _record_login(context, outcome="success", actor=actor, details={})
        return LoginPayload(
            access_token=issued.token,
            token_type=TOKEN_TYPE,
            expires_in=issued.expires_in,
            password_change_required=signed_in.must_change_password,
        )

    @strawberry.mutation(
        extensions=signed_in(),
        description="Change your own email address or display name.",
    )
    async def update_me(self, info: Info[Context, None], input: UpdateMeInput) -> User:
        context = info.context
        cipher = context.services.cipher

        async def change(session, note: AuditNote) -> User:  # type: ignore[no-untyped-def]
            user = await _current_user(info, session)
            note.target_id = user.id
            note.details["fields"] = await update_profile(
                session,
                context.services.accounts,
                user,
                email=kept_if_unset(input.email),
                display_name=kept_if_unset(input.display_name),
            )
            return User.from_row(user, cipher)

        return await audited(
            context, action="user.update_self", target_type="user", change=change
        )

    @strawberry.mutation(
        extensions=signed_in(),
        description=(
            "Change your own password; the current one is required. Clears "
            "mustChangePassword."
        ),
    )
    async def change_password(
        self,
        info: Info[Context, None],
        current_password: str,
        new_password: str,
    ) -> User:
        context = info.context
        cipher = context.services.cipher

        async def change(session, note: AuditNote) -> User:  # type: ignore[no-untyped-def]
            user = await _current_user(info, session)
            note.target_id = user.id
            await change_password(
                session,
                context.services.accounts,
                user,
                current_password=current_password,
                new_password=new_password,
            )
            return User.from_row(user, cipher)

        return await audited(
            context, action="user.change_password", target_type="user", change=change
        )

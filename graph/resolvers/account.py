"""Signing in, and what users may see and change about themselves."""

import logging

import strawberry
from strawberry.types import Info

from graph.auditing import AuditNote, audited
from graph.context import Context, caller
from graph.errors import ClientError, ErrorCode
from graph.inputs import UpdateMeInput, kept_if_unset
from graph.permissions import signed_in
from graph.types import User
from schema.users import change_password, get_active_user, update_profile

logger = logging.getLogger(__name__)

TOKEN_TYPE = "Bearer"  # noqa: S105 - the HTTP authentication scheme, not a secret
# Longer values are not looked up at all; they can match no stored account.
MAX_LOGIN_FIELD_LENGTH = 1024


async def _current_user(info: Info[Context, None], session):  # type: ignore[no-untyped-def]
    user = await get_active_user(session, caller(info).user_id)
    if user is None:
        raise ClientError(
            ErrorCode.UNAUTHENTICATED, "Not authenticated: the user is gone."
        )
    return user


@strawberry.type
class AccountQuery:
    @strawberry.field(
        extensions=signed_in(allow_limited=True),
        description="The signed-in user, with roles.",
    )
    async def me(self, info: Info[Context, None]) -> User | None:
        services = info.context.services
        async with services.session_factory() as session:
            return User.from_row(await _current_user(info, session), services.cipher)

    @strawberry.field(
        extensions=signed_in(allow_limited=True),
        description=(
            "Permissions the caller holds now, sorted, so that a frontend can "
            "hide what would be refused."
        ),
    )
    def my_permissions(self, info: Info[Context, None]) -> list[str]:
        return sorted(caller(info).permissions)


@strawberry.type
class AccountMutation:
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
        extensions=signed_in(allow_limited=True),
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

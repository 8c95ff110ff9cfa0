"""Service accounts and their API keys."""

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import Info

from graph.auditing import AuditNote, audited
from graph.context import Context, caller
from graph.inputs import CreateApiKeyInput
from graph.permissions import requires
from graph.resolvers.pages import parse_id
from graph.resolvers.users import load_user
from graph.types import ApiKey, ApiKeyCreated, User
from schema.apikeys import create_key, create_service_account, list_keys, revoke_key
from schema.catalogue import Permission
from schema.errors import NotFound


@strawberry.type
class ServiceAccountQuery:
    @strawberry.field(
        extensions=requires(Permission.USERS_READ),
        description="The API keys of a service account, revoked ones included.",
    )
    async def api_keys(
        self, info: Info[Context, None], service_account_id: strawberry.ID
    ) -> list[ApiKey]:
        async with info.context.services.session_factory() as session:
            account = await load_user(session, service_account_id)
            return [
                ApiKey.from_row(row) for row in await list_keys(session, account.id)
            ]


@strawberry.type
class ServiceAccountMutation:
    @strawberry.mutation(
        extensions=requires(Permission.USERS_WRITE),
        description=(
            "Create a service account: a user that authenticates only with API "
            "keys and never with a password."
        ),
    )
    async def create_service_account(
        self, info: Info[Context, None], username: str
    ) -> User:
        services = info.context.services

        async def change(session: AsyncSession, note: AuditNote) -> User:
            user = await create_service_account(
                session, services.accounts, username=username
            )
            note.target_id = user.id
            return User.from_row(user, services.cipher)

        return await audited(
            info.context,
            action="service_account.create",
            target_type="user",
            change=change,
        )

    @strawberry.mutation(
        extensions=requires(Permission.USERS_WRITE),
        description="Create an API key; its secret is returned this once only.",
    )
    async def create_api_key(
        self, info: Info[Context, None], input: CreateApiKeyInput
    ) -> ApiKeyCreated:
        context = info.context
        principal = caller(info)

        async def change(session: AsyncSession, note: AuditNote) -> ApiKeyCreated:
            account = await load_user(session, input.service_account_id)
            issued = await create_key(
                session,
                user=account,
                name=input.name,
                permissions=input.permissions,
                lifetime_days=input.expires_in_days,
                actor_permissions=principal.permissions,
                now=context.services.clock.now(),
            )
            note.target_id = issued.row.id
            note.details.update(
                account=account.id, permissions=sorted(issued.row.permission_names)
            )
            return ApiKeyCreated(key=issued.key, api_key=ApiKey.from_row(issued.row))

        return await audited(
            context, action="api_key.create", target_type="api_key", change=change
        )

    @strawberry.mutation(
        extensions=requires(Permission.USERS_WRITE),
        description="Revoke an API key; it stops working at once.",
    )
    async def revoke_api_key(
        self, info: Info[Context, None], id: strawberry.ID
    ) -> ApiKey:
        services = info.context.services

        async def change(session: AsyncSession, note: AuditNote) -> ApiKey:
            number = parse_id(id)
            if number is None:
                raise NotFound("No API key with this id.")
            row = await revoke_key(session, number, now=services.clock.now())
            return ApiKey.from_row(row)

        return await audited(
            info.context,
            action="api_key.revoke",
            target_type="api_key",
            target_id=id,
            change=change,
        )

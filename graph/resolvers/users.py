"""User administration: queries and mutations that need users:read or users:write."""

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import Info

from graph.auditing import AuditNote, audited
from graph.context import Context, caller
from graph.inputs import CreateUserInput, UpdateUserInput, UserFilter, kept_if_unset
from graph.permissions import requires
from graph.resolvers.pages import PageLimit, check_page, parse_id
from graph.types import PasswordResetPayload, User, UserPage
from schema.catalogue import Permission
from schema.errors import InvalidInput, NotFound
from schema.guards import check_can_manage
from schema.tables import User as UserRow
from schema.users import (
    create_user,
    delete_user,
    get_user,
    reset_password,
    search_users,
    set_active,
    set_roles,
    update_profile,
)

USER_NOT_FOUND = "No user with this id."


async def load_user(session: AsyncSession, user_id: strawberry.ID) -> UserRow:
    """Load a user by GraphQL id.

    Raises:
        NotFound: The id names no user, or cannot name one.
    """
    number = parse_id(user_id)
    user = await get_user(session, number) if number is not None else None
    if user is None:
        raise NotFound(USER_NOT_FOUND)
    return user


async def load_manageable_user(
    session: AsyncSession, user_id: strawberry.ID, info: Info[Context, None]
) -> UserRow:
    """Load a user the caller may change: one holding no permission it lacks.

    Raises:
        NotFound: No user has this id.
        PermissionDenied: The user is more privileged than the caller.
    """
    user = await load_user(session, user_id)
    check_can_manage(
        caller(info).permissions, user.permission_names, what=f"user {user.id}"
    )
    return user


@strawberry.type
class UserQuery:
    @strawberry.field(
        extensions=requires(Permission.USERS_READ),
        description="Users ordered by id, one page at a time.",
    )
    async def users(
        self,
        info: Info[Context, None],
        filter: UserFilter | None = None,
        limit: PageLimit = None,
        offset: int = 0,
    ) -> UserPage:
        context = info.context
        limit = check_page(context, limit, offset)
        where = filter or UserFilter()
        async with context.services.session_factory() as session:
            rows, total = await search_users(
                session,
                context.services.cipher,
                role=where.role,
                active=where.is_active,
                search=where.search,
                limit=limit,
                offset=offset,
            )
            items = [User.from_row(row, context.services.cipher) for row in rows]
        return UserPage(items=items, total_count=total)

    @strawberry.field(extensions=requires(Permission.USERS_READ))
    async def user(self, info: Info[Context, None], id: strawberry.ID) -> User | None:
        services = info.context.services
        async with services.session_factory() as session:
            return User.from_row(await load_user(session, id), services.cipher)


@strawberry.type
class UserMutation:
    @strawberry.mutation(extensions=requires(Permission.USERS_WRITE))
    async def create_user(
        self, info: Info[Context, None], input: CreateUserInput
    ) -> User:
        context = info.context
        services = context.services

        async def change(session: AsyncSession, note: AuditNote) -> User:
            user = await create_user(
                session,
                services.accounts,
                username=input.username,
                password=input.password,
                role_names=input.roles,
                email=input.email,
                display_name=input.display_name,
                actor_permissions=caller(info).permissions,
            )
            note.target_id = user.id
            note.details["roles"] = sorted(input.roles)
            return User.from_row(user, services.cipher)

        return await audited(
            context, action="user.create", target_type="user", change=change
        )

    @strawberry.mutation(
        extensions=requires(Permission.USERS_WRITE),
        description="Change a user's account fields; omitted fields are kept.",
    )
    async def update_user(
        self, info: Info[Context, None], id: strawberry.ID, input: UpdateUserInput
    ) -> User:
        context = info.context
        services = context.services

        async def change(session: AsyncSession, note: AuditNote) -> User:
            user = await load_manageable_user(session, id, info)
            if input.username is None:
                raise InvalidInput("username", "must not be null.")
            changed = await update_profile(
                session,
                services.accounts,
                user,
                username=kept_if_unset(input.username),
                email=kept_if_unset(input.email),
                display_name=kept_if_unset(input.display_name),
            )
            if input.is_active is not None and input.is_active is not strawberry.UNSET:
                if await set_active(session, user, active=input.is_active):
                    changed.append("isActive")
            note.details["fields"] = changed
            return User.from_row(user, services.cipher)

        return await audited(
            context,
            action="user.update",
            target_type="user",
            target_id=id,
            change=change,
        )

    @strawberry.mutation(
        extensions=requires(Permission.USERS_WRITE),
        description="Stop a user from signing in; their tokens stop working.",
    )
    async def deactivate_user(
        self, info: Info[Context, None], id: strawberry.ID
    ) -> User:
        return await _set_active(info, id, active=False)

    @strawberry.mutation(extensions=requires(Permission.USERS_WRITE))
    async def reactivate_user(
        self, info: Info[Context, None], id: strawberry.ID
    ) -> User:
        return await _set_active(info, id, active=True)

    @strawberry.mutation(
        extensions=requires(Permission.USERS_WRITE),
        description="Delete a user; returns the id of the deleted user.",
    )
    async def delete_user(
        self, info: Info[Context, None], id: strawberry.ID
    ) -> strawberry.ID:
        async def change(session: AsyncSession, note: AuditNote) -> strawberry.ID:
            user = await load_manageable_user(session, id, info)
            note.details["username"] = user.username
            await delete_user(session, user)
            return id

        return await audited(
            info.context,
            action="user.delete",
            target_type="user",
            target_id=id,
            change=change,
        )

    @strawberry.mutation(
        extensions=requires(Permission.USERS_WRITE),
        description=(
            "Replace a user's roles. You can add only roles whose permissions "
            "you hold yourself."
        ),
    )
    async def set_user_roles(
        self, info: Info[Context, None], id: strawberry.ID, roles: list[str]
    ) -> User:
        services = info.context.services

        async def change(session: AsyncSession, note: AuditNote) -> User:
            user = await load_manageable_user(session, id, info)
            added, removed = await set_roles(
                session, user, roles, actor_permissions=caller(info).permissions
            )
            note.details.update(added=added, removed=removed)
            return User.from_row(user, services.cipher)

        return await audited(
            info.context,
            action="user.set_roles",
            target_type="user",
            target_id=id,
            change=change,
        )

    @strawberry.mutation(
        extensions=requires(Permission.USERS_WRITE),
        description=(
            "Replace a user's password with a temporary one. The user can do "
            "nothing but changePassword until they set their own."
        ),
    )
    async def reset_user_password(
        self, info: Info[Context, None], id: strawberry.ID
    ) -> PasswordResetPayload:
        services = info.context.services

        async def change(
            session: AsyncSession, note: AuditNote
        ) -> PasswordResetPayload:
            user = await load_manageable_user(session, id, info)
            temporary = await reset_password(session, services.accounts, user)
            return PasswordResetPayload(
                temporary_password=temporary, user=User.from_row(user, services.cipher)
            )

        return await audited(
            info.context,
            action="user.reset_password",
            target_type="user",
            target_id=id,
            change=change,
        )


async def _set_active(
    info: Info[Context, None], id: strawberry.ID, *, active: bool
) -> User:
    services = info.context.services

    async def change(session: AsyncSession, note: AuditNote) -> User:
        user = await load_manageable_user(session, id, info)
        note.details["changed"] = await set_active(session, user, active=active)
        return User.from_row(user, services.cipher)

    action = "user.reactivate" if active else "user.deactivate"
    return await audited(
        info.context, action=action, target_type="user", target_id=id, change=change
    )

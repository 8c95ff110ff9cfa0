"""Roles and the permission catalogue."""

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import Info

from graph.auditing import AuditNote, audited
from graph.context import Context, caller
from graph.inputs import CreateRoleInput, UpdateRoleInput
from graph.permissions import requires
from graph.types import PermissionInfo, Role
from schema.catalogue import Permission
from schema.roles import (
    create_role,
    delete_role,
    get_role,
    list_permissions,
    list_roles,
    update_role,
)


@strawberry.type
class RoleQuery:
    @strawberry.field(
        extensions=requires(Permission.ROLES_READ), description="Every role, by name."
    )
    async def roles(self, info: Info[Context, None]) -> list[Role]:
        async with info.context.services.session_factory() as session:
            return [Role.from_row(row) for row in await list_roles(session)]

    @strawberry.field(
        extensions=requires(Permission.ROLES_READ),
        description="The permission catalogue, with what each permission allows.",
    )
    async def permissions(self, info: Info[Context, None]) -> list[PermissionInfo]:
        async with info.context.services.session_factory() as session:
            return [
                PermissionInfo.from_row(row) for row in await list_permissions(session)
            ]


@strawberry.type
class RoleMutation:
    @strawberry.mutation(
        extensions=requires(Permission.ROLES_WRITE),
        description="Create a role; it may grant only permissions you hold.",
    )
    async def create_role(
        self, info: Info[Context, None], input: CreateRoleInput
    ) -> Role:
        async def change(session: AsyncSession, note: AuditNote) -> Role:
            role = await create_role(
                session,
                name=input.name,
                description=input.description,
                permissions=input.permissions,
                actor_permissions=caller(info).permissions,
            )
            note.target_id = role.name
            note.details["permissions"] = sorted(role.permission_names)
            return Role.from_row(role)

        return await audited(
            info.context,
            action="role.create",
            target_type="role",
            target_id=input.name,
            change=change,
        )

    @strawberry.mutation(
        extensions=requires(Permission.ROLES_WRITE),
        description=(
            "Change a role. Its users get the new permissions on their next request."
        ),
    )
    async def update_role(
        self, info: Info[Context, None], name: str, input: UpdateRoleInput
    ) -> Role:
        async def change(session: AsyncSession, note: AuditNote) -> Role:
            role = await get_role(session, name)
            note.details.update(
                await update_role(
                    session,
                    role,
                    name=input.name,
                    description=input.description,
                    permissions=input.permissions,
                    actor_permissions=caller(info).permissions,
                )
            )
            return Role.from_row(role)

        return await audited(
            info.context,
            action="role.update",
            target_type="role",
            target_id=name,
            change=change,
        )

    @strawberry.mutation(
        extensions=requires(Permission.ROLES_WRITE),
        description=(
            "Delete a role. A role that users hold is deleted only with force: "
            "true, which removes it from them. Returns the name."
        ),
    )
    async def delete_role(
        self, info: Info[Context, None], name: str, force: bool = False
    ) -> str:
        async def change(session: AsyncSession, note: AuditNote) -> str:
            role = await get_role(session, name)
            note.details["usersAffected"] = await delete_role(
                session, role, force=force, actor_permissions=caller(info).permissions
            )
            return name

        return await audited(
            info.context,
            action="role.delete",
            target_type="role",
            target_id=name,
            change=change,
        )

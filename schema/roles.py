"""Role service: the permission catalogue in the database and role changes."""

import re
import unicodedata
from collections.abc import Collection, Iterable

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from schema.catalogue import (
    BUILTIN_ROLE_DESCRIPTIONS,
    BUILTIN_ROLE_PERMISSIONS,
    PERMISSION_DESCRIPTIONS,
    BuiltinRole,
    Permission,
)
from schema.errors import Conflict, InvalidInput, NotFound
from schema.guards import (
    bump_role_members,
    check_can_grant,
    check_can_manage,
    ensure_an_admin_remains,
)
from schema.tables import PermissionRow, Role, user_roles

MAX_DESCRIPTION_LENGTH = 500
_ROLE_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]{1,63}")


async def seed_catalogue(session: AsyncSession) -> None:
    """Write the permission catalogue and the built-in roles to the database.

    Safe to run on every start: missing permissions and roles are added, and
    the admin role is given every permission, including ones added by a newer
    release. Other built-in roles keep whatever permissions they have once
    created.
    """
    existing = {
        row.name: row for row in (await session.scalars(select(PermissionRow))).all()
    }
    for permission, description in PERMISSION_DESCRIPTIONS.items():
        row = existing.get(permission.value)
        if row is None:
            row = PermissionRow(name=permission.value, description=description)
            session.add(row)
            existing[permission.value] = row
        else:
            row.description = description
    await session.flush()

    roles = {role.name: role for role in (await session.scalars(select(Role))).all()}
    for builtin, permissions in BUILTIN_ROLE_PERMISSIONS.items():
        role = roles.get(builtin.value)
        granted = [existing[p.value] for p in sorted(permissions)]
        if role is None:
            session.add(
                Role(
                    name=builtin.value,
                    description=BUILTIN_ROLE_DESCRIPTIONS[builtin],
                    builtin=True,
                    permissions=granted,
                )
            )
        elif builtin is BuiltinRole.ADMIN:
            role.permissions = granted
    await session.flush()


async def get_roles_by_name(
    session: AsyncSession, names: Iterable[str], *, field: str = "roles"
) -> list[Role]:
    """Load roles by name.

    Raises:
        InvalidInput: A name matches no role.
    """
    requested = sorted(set(names))
    if not requested:
        return []
    found = (await session.scalars(select(Role).where(Role.name.in_(requested)))).all()
    missing = sorted(set(requested) - {role.name for role in found})
    if missing:
        raise InvalidInput(field, f"unknown role(s): {', '.join(missing)}.")
    return list(found)


async def get_role(session: AsyncSession, name: str) -> Role:
    """Load a role by name.

    Raises:
        NotFound: No role has this name.
    """
    role = await session.scalar(select(Role).where(Role.name == name))
    if role is None:
        raise NotFound(f"No role named {name!r}.")
    return role


async def list_roles(session: AsyncSession) -> list[Role]:
    return list(await session.scalars(select(Role).order_by(Role.name)))


async def list_permissions(session: AsyncSession) -> list[PermissionRow]:
    return list(
        await session.scalars(select(PermissionRow).order_by(PermissionRow.name))
    )


async def count_role_members(session: AsyncSession, role: Role) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(user_roles)
        .where(user_roles.c.role_id == role.id)
    )
    return int(count or 0)


def normalize_role_name(name: str, *, field: str = "name") -> str:
    if not _ROLE_NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            field,
            "must be 2 to 64 characters: a lowercase letter, then lowercase "
            "letters, digits, - or _.",
        )
    return name


def _check_description(description: str) -> str:
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidInput(
            "description", f"must be at most {MAX_DESCRIPTION_LENGTH} characters."
        )
    if any(unicodedata.category(ch) in {"Cc", "Cf"} for ch in description):
        raise InvalidInput(
            "description", "must not contain control or formatting characters."
        )
    return description


async def _permission_rows(
    session: AsyncSession, names: Iterable[str]
) -> list[PermissionRow]:
    requested = set(names)
    unknown = sorted(requested - {p.value for p in Permission})
    if unknown:
        raise InvalidInput(
            "permissions", f"unknown permission(s): {', '.join(unknown)}."
        )
    if not requested:
        return []
    rows = await session.scalars(
        select(PermissionRow).where(PermissionRow.name.in_(sorted(requested)))
    )
    return list(rows)


async def create_role(
    session: AsyncSession,
    *,
    name: str,
    description: str,
    permissions: Iterable[str],
    actor_permissions: Collection[str],
) -> Role:
    """Create a role.

    Raises:
        InvalidInput: The name or a permission is invalid.
        PermissionDenied: The role would grant a permission the actor lacks.
        Conflict: A role with this name exists.
    """
    name = normalize_role_name(name)
    rows = await _permission_rows(session, permissions)
    check_can_grant(actor_permissions, (row.name for row in rows))
    if await session.scalar(select(Role).where(Role.name == name)) is not None:
        raise Conflict(f"A role named {name!r} already exists.")
    role = Role(
        name=name,
        description=_check_description(description),
        builtin=False,
        permissions=rows,
    )
    session.add(role)
    await session.flush()
    return role


async def update_role(
    session: AsyncSession,
    role: Role,
    *,
    name: str | None = None,
    description: str | None = None,
    permissions: Iterable[str] | None = None,
    actor_permissions: Collection[str],
) -> dict[str, object]:
    """Change a role's name, description or permissions.

    Built-in roles keep their names, and the admin role keeps every
    permission.

    Returns:
        What changed: new name, and permissions added and removed.

    Raises:
        InvalidInput: A value is invalid.
        PermissionDenied: The role would grant a permission the actor lacks.
        Conflict: The new name is taken, the change would rename a built-in
            role or narrow the admin role, or no active user would hold every
            permission afterwards.
    """
    check_can_manage(
        actor_permissions, role.permission_names, what=f"role {role.name!r}"
    )
    changes: dict[str, object] = {}
    if name is not None and name != role.name:
        if role.builtin:
            raise Conflict(f"Role {role.name!r} is built in and cannot be renamed.")
        name = normalize_role_name(name)
        if await session.scalar(select(Role).where(Role.name == name)) is not None:
            raise Conflict(f"A role named {name!r} already exists.")
        changes["renamedFrom"] = role.name
        role.name = name
    if description is not None:
        role.description = _check_description(description)
        changes["description"] = True
    if permissions is not None:
        rows = await _permission_rows(session, permissions)
        after = {row.name for row in rows}
        before = set(role.permission_names)
        if role.name == BuiltinRole.ADMIN.value and role.builtin and after != before:
            raise Conflict("The built-in admin role always grants every permission.")
        check_can_grant(actor_permissions, after - before)
        role.permissions = rows
        if after != before:
            await bump_role_members(session, role.id)
        changes["permissionsAdded"] = sorted(after - before)
        changes["permissionsRemoved"] = sorted(before - after)
    await session.flush()
    await ensure_an_admin_remains(session)
    return changes


async def delete_role(
    session: AsyncSession,
    role: Role,
    *,
    force: bool,
    actor_permissions: Collection[str],
) -> int:
    """Delete a role and return how many users held it.

    Raises:
        Conflict: The role is built in, users hold it and `force` is false,
            or deleting it would leave no active user with every permission.
    """
    if role.builtin:
        raise Conflict(f"Role {role.name!r} is built in and cannot be deleted.")
    check_can_manage(
        actor_permissions, role.permission_names, what=f"role {role.name!r}"
    )
    members = await count_role_members(session, role)
    if members and not force:
        raise Conflict(
            f"Role {role.name!r} is held by {members} user(s); "
            "pass force: true to delete it anyway."
        )
    if members:
        await bump_role_members(session, role.id)
    await session.delete(role)
    await session.flush()
    await ensure_an_admin_remains(session)
    return members

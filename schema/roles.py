"""Role service: the permission catalogue in the database and role lookups."""

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from schema.catalogue import (
    BUILTIN_ROLE_DESCRIPTIONS,
    BUILTIN_ROLE_PERMISSIONS,
    PERMISSION_DESCRIPTIONS,
    BuiltinRole,
)
from schema.errors import InvalidInput
from schema.tables import PermissionRow, Role


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

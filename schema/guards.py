"""Guards that keep role and account changes safe.

Both roles and users call them, so they live apart from either service.
"""

from collections.abc import Collection, Iterable

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from schema.catalogue import Permission
from schema.errors import Conflict, PermissionDenied
from schema.tables import User, user_roles

ALL_PERMISSIONS = frozenset(p.value for p in Permission)
# Arbitrary constant naming the advisory lock of the last-admin guard.
ADMIN_GUARD_LOCK = 0x6667_0001


def check_can_grant(actor_permissions: Collection[str], granted: Iterable[str]) -> None:
    """Raise unless the actor holds every permission it is about to grant.

    Raises:
        PermissionDenied: Some granted permission is not the actor's own.
    """
    missing = sorted(set(granted) - set(actor_permissions))
    if missing:
        raise PermissionDenied(
            "You cannot grant permissions you do not hold: " + ", ".join(missing) + "."
        )


def check_can_manage(
    actor_permissions: Collection[str], target_permissions: Iterable[str], *, what: str
) -> None:
    """Raise unless the actor holds every permission the target holds.

    Nobody may change, reset, lock out or remove a user or role more
    privileged than themselves: that would let a user manager take over an
    administrator's account, or strip grants they could not give back.

    Raises:
        PermissionDenied: The target holds a permission the actor lacks.
    """
    missing = sorted(set(target_permissions) - set(actor_permissions))
    if missing:
        raise PermissionDenied(
            f"You cannot change {what}: it holds permissions you do not hold: "
            + ", ".join(missing)
            + "."
        )


async def ensure_an_admin_remains(session: AsyncSession) -> None:
    """Raise unless some active user still holds every permission.

    Called after a change has been flushed, inside its transaction, so that
    raising rolls the change back. On PostgreSQL a transaction-level advisory
    lock serializes these checks, so that two concurrent changes cannot each
    count the other's administrator; SQLite serializes writers anyway.

    Raises:
        Conflict: The change would leave no active user with every permission.
    """
    if session.bind.dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(ADMIN_GUARD_LOCK)))
    # Users with a pending password reset count: they hold the permissions
    # and regain them by choosing a new password.
    for user in await session.scalars(select(User).where(User.is_active)):
        if user.permission_names >= ALL_PERMISSIONS:
            return
    raise Conflict(
        "The change would leave no active user holding every permission; "
        "grant the admin role to another active user first."
    )


async def bump_role_members(session: AsyncSession, role_id: int) -> None:
    """Raise the auth version of every holder of a role, ending their tokens.

    Called when what the role grants changes, so that no access token issued
    under the old grants stays in use.
    """
    await session.execute(
        update(User)
        .where(
            User.id.in_(
                select(user_roles.c.user_id).where(user_roles.c.role_id == role_id)
            )
        )
        .values(auth_version=User.auth_version + 1)
        .execution_options(synchronize_session=False)
    )

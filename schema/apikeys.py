"""Service accounts and their API keys.

A key reads `fgk_<prefix>_<secret>`. The prefix finds the row and is shown in
listings; the secret has 256 random bits and is stored only as its SHA-256
hash. Keys carry a subset of `API_KEY_PERMISSIONS`, so a machine client can
never manage users or roles.
"""

import hashlib
import hmac
import re
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from schema.catalogue import API_KEY_PERMISSIONS
from schema.clock import as_utc
from schema.errors import InvalidInput, NotFound
from schema.guards import check_can_grant
from schema.tables import ApiKey, User
from schema.users import AccountTools, create_user, has_hidden_characters

KEY_PATTERN = re.compile(r"fgk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
MAX_KEY_LIFETIME = timedelta(days=366)
LAST_USED_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: str
    row: ApiKey


@dataclass(frozen=True, slots=True)
class KeyPrincipal:
    key_id: int
    user_id: int
    username: str
    permissions: frozenset[str]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def looks_like_api_key(credential: str) -> bool:
    return credential.startswith("fgk_")


async def create_service_account(
    session: AsyncSession, tools: AccountTools, *, username: str
) -> User:
    """Create a user that signs in only with API keys."""
    user = await create_user(
        session,
        tools,
        username=username,
        # Never revealed or used: service accounts cannot sign in with a
        # password, but the column needs a valid hash.
        password=secrets.token_urlsafe(32),
        role_names=[],
    )
    user.is_service_account = True
    await session.flush()
    return user


async def create_key(
    session: AsyncSession,
    *,
    user: User,
    name: str,
    permissions: Iterable[str],
    lifetime_days: int | None,
    actor_permissions: Collection[str],
    now: datetime,
) -> IssuedKey:
    """Create an API key for a service account.

    Raises:
        InvalidInput: The user is not a service account, the name is empty or
            too long, a permission is not allowed on keys, or the lifetime is
            not between one day and `MAX_KEY_LIFETIME`.
        PermissionDenied: The key would carry a permission the actor lacks.
    """
    if not user.is_service_account:
        raise InvalidInput("serviceAccountId", "is not a service account.")
    name = name.strip()
    if not 1 <= len(name) <= 64 or has_hidden_characters(name):
        raise InvalidInput("name", "must be 1 to 64 visible characters.")
    scope = set(permissions)
    allowed = {p.value for p in API_KEY_PERMISSIONS}
    if not scope or not scope <= allowed:
        raise InvalidInput(
            "permissions",
            f"must be a non-empty subset of: {', '.join(sorted(allowed))}.",
        )
    check_can_grant(actor_permissions, scope)
    if lifetime_days is not None and not 1 <= lifetime_days <= MAX_KEY_LIFETIME.days:
        raise InvalidInput(
            "expiresInDays", f"must be between 1 and {MAX_KEY_LIFETIME.days}."
        )

    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(
        user_id=user.id,
        name=name,
        prefix=prefix,
        secret_hash=_hash(secret),
        permissions=",".join(sorted(scope)),
        created_at=now,
        expires_at=(
            now + timedelta(days=lifetime_days) if lifetime_days is not None else None
        ),
    )
    session.add(row)
    await session.flush()
    return IssuedKey(key=f"fgk_{prefix}_{secret}", row=row)


async def authenticate_key(
    session: AsyncSession, credential: str, *, now: datetime
) -> KeyPrincipal | None:
    """Return who an API key acts for, or None when it is not valid now."""
    match = KEY_PATTERN.fullmatch(credential)
    if match is None:
        return None
    prefix, secret = match.groups()
    row = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None or not hmac.compare_digest(row.secret_hash, _hash(secret)):
        return None
    if row.revoked_at is not None:
        return None
    if row.expires_at is not None and now >= as_utc(row.expires_at):
        return None
    user = await session.get(User, row.user_id)
    if user is None or not user.is_active or not user.is_service_account:
        return None
    if row.last_used_at is None or as_utc(row.last_used_at) < now - LAST_USED_INTERVAL:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == row.id)
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
    allowed = {p.value for p in API_KEY_PERMISSIONS}
    return KeyPrincipal(
        key_id=row.id,
        user_id=user.id,
        username=user.username,
        permissions=frozenset(row.permission_names & allowed),
    )


async def revoke_key(session: AsyncSession, key_id: int, *, now: datetime) -> ApiKey:
    row = await session.get(ApiKey, key_id)
    if row is None:
        raise NotFound("No API key with this id.")
    if row.revoked_at is None:
        row.revoked_at = now
        await session.flush()
    return row


async def list_keys(session: AsyncSession, user_id: int) -> list[ApiKey]:
    return list(
        await session.scalars(
            select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.id)
        )
    )


async def revoke_keys_of(session: AsyncSession, user_id: int, *, now: datetime) -> None:
    """Revoke every key of a service account, as when it is deactivated."""
    await session.execute(
        update(ApiKey)
        .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )

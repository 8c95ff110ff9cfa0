"""User service: accounts, sign-in, self-service and the admin guards."""

import re
import secrets
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema.crypto import DataCipher
from schema.errors import (
    Conflict,
    InvalidCredentials,
    InvalidInput,
)
from schema.guards import check_can_grant, ensure_an_admin_remains
from schema.passwords import PasswordPolicy, ThreadedPasswordHasher
from schema.roles import get_roles_by_name
from schema.sessions import revoke_user_sessions
from schema.tables import Role, User, role_permissions, user_roles

MAX_USERNAME_LENGTH = 64
MAX_EMAIL_LENGTH = 254
MAX_DISPLAY_NAME_LENGTH = 100
_USERNAME_PATTERN = re.compile(r"[\w.@+-]+")
# Deliberately loose: one @, no spaces, a dot in the domain. Deliverability is
# for the mail system to decide.
_EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

EMAIL_CONTEXT = "users.email"
DISPLAY_NAME_CONTEXT = "users.display_name"


class _Unset(Enum):
    UNSET = "UNSET"


UNSET = _Unset.UNSET
"""Marks an update argument that leaves its field unchanged."""


@dataclass(frozen=True, slots=True)
class AccountTools:
    """Cipher, hasher and password policy used by account changes."""

    cipher: DataCipher
    hasher: ThreadedPasswordHasher
    policy: PasswordPolicy


def username_key(username: str) -> str:
    """Return the form under which usernames are unique: NFKC, then case-folded.

    Case folding can change the form again, so NFKC is applied once more.
    """
    folded = unicodedata.normalize("NFKC", username).casefold()
    return unicodedata.normalize("NFKC", folded)


def normalize_username(username: str, *, field: str = "username") -> str:
    """Validate a new username and return it NFKC-normalized.

    Raises:
        InvalidInput: The username is empty, too long or has characters other
            than letters, digits and `. @ + - _`.
    """
    normalized = unicodedata.normalize("NFKC", username)
    if not normalized:
        raise InvalidInput(field, "must not be empty.")
    if len(normalized) > MAX_USERNAME_LENGTH:
        raise InvalidInput(
            field, f"must be at most {MAX_USERNAME_LENGTH} characters long."
        )
    if not _USERNAME_PATTERN.fullmatch(normalized):
        raise InvalidInput(
            field, "may contain only letters, digits and the characters . @ + - _"
        )
    if len(username_key(normalized)) > MAX_USERNAME_LENGTH:
        # Case folding can lengthen a name (ß becomes ss).
        raise InvalidInput(
            field, f"must be at most {MAX_USERNAME_LENGTH} characters once case-folded."
        )
    return normalized


def has_hidden_characters(text: str) -> bool:
    """Tell whether text has control or format characters (bidi marks, zero-width)."""
    return any(
        unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn"} for ch in text
    )


def normalize_email(email: str, *, field: str = "email") -> str:
    """Validate an email address and return it NFKC-normalized and stripped."""
    normalized = unicodedata.normalize("NFKC", email).strip()
    if len(normalized) > MAX_EMAIL_LENGTH:
        raise InvalidInput(field, f"must be at most {MAX_EMAIL_LENGTH} characters.")
    if not _EMAIL_PATTERN.fullmatch(normalized) or has_hidden_characters(normalized):
        raise InvalidInput(field, "is not an email address.")
    return normalized


def normalize_display_name(name: str, *, field: str = "displayName") -> str:
    normalized = unicodedata.normalize("NFKC", name).strip()
    if not normalized:
        raise InvalidInput(field, "must not be empty.")
    if len(normalized) > MAX_DISPLAY_NAME_LENGTH:
        raise InvalidInput(
            field, f"must be at most {MAX_DISPLAY_NAME_LENGTH} characters."
        )
    if any(unicodedata.category(ch).startswith("C") for ch in normalized):
        raise InvalidInput(field, "must not contain control characters.")
    return normalized


def email_index(cipher: DataCipher, email: str) -> str:
    """Return the keyed hash under which an address is unique, ignoring case."""
    return cipher.index(username_key(email), context=EMAIL_CONTEXT)


def read_email(cipher: DataCipher, user: User) -> str | None:
    return cipher.open_optional(user.email_sealed, context=EMAIL_CONTEXT)


def read_display_name(cipher: DataCipher, user: User) -> str | None:
    return cipher.open_optional(user.display_name_sealed, context=DISPLAY_NAME_CONTEXT)


async def get_user(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_username(session: AsyncSession, username: str) -> User | None:
    key = username_key(username)
    if len(key) > MAX_USERNAME_LENGTH:
        return None
    return await session.scalar(select(User).where(User.username_key == key))


async def get_active_user(session: AsyncSession, user_id: int) -> User | None:
    """Load a user with roles and permissions, or None if missing or inactive."""
    user = await session.get(User, user_id)
    if user is None or not user.is_active:
        return None
    return user


async def load_grants(
    session: AsyncSession, user_id: int
) -> tuple[tuple[str, ...], frozenset[str]]:
    """Return a user's role names and the permissions those roles grant."""
    rows = (
        await session.execute(
            select(Role.name, role_permissions.c.permission_name)
            .join(user_roles, user_roles.c.role_id == Role.id)
            .outerjoin(role_permissions, role_permissions.c.role_id == Role.id)
            .where(user_roles.c.user_id == user_id)
        )
    ).all()
    roles = tuple(sorted({row.name for row in rows}))
    permissions = frozenset(row.permission_name for row in rows if row.permission_name)
    return roles, permissions


def effective_permissions(user: User) -> frozenset[str]:
    """Return what the user may do now: nothing until a reset password is changed."""
    if user.must_change_password:
        return frozenset()
    return user.permission_names


async def _flush_unique(session: AsyncSession, message: str) -> None:
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as error:
        raise Conflict(message) from error


async def _ensure_username_free(
    session: AsyncSession, display: str, *, except_id: int | None = None
) -> None:
    existing = await get_user_by_username(session, display)
    if existing is not None and existing.id != except_id:
        raise Conflict(f"A user named {display!r} already exists.")


async def _ensure_email_free(
    session: AsyncSession, index: str, *, except_id: int | None = None
) -> None:
    existing = await session.scalar(select(User).where(User.email_index == index))
    if existing is not None and existing.id != except_id:
        raise Conflict("Another user has this email address.")


async def create_user(
    session: AsyncSession,
    tools: AccountTools,
    *,
    username: str,
    password: str,
    role_names: Iterable[str],
    email: str | None = None,
    display_name: str | None = None,
    must_change_password: bool = False,
    actor_permissions: Collection[str] | None = None,
) -> User:
    """Create an active user with the given roles.

    Args:
        actor_permissions: What the creating user holds; every role granted
            must stay within it. None for an operator at the command line.

    Raises:
        InvalidInput: A value is invalid, or the password breaks the policy.
        PermissionDenied: A role grants a permission the actor lacks.
        Conflict: The username or email is taken, ignoring case and Unicode form.
    """
    display = normalize_username(username)
    address = normalize_email(email) if email is not None else None
    name = normalize_display_name(display_name) if display_name is not None else None
    roles = await get_roles_by_name(session, role_names)
    if actor_permissions is not None:
        for role in roles:
            check_can_grant(actor_permissions, role.permission_names)
    await _ensure_username_free(session, display)
    index = email_index(tools.cipher, address) if address is not None else None
    if index is not None:
        await _ensure_email_free(session, index)
    normalized_password = await tools.hasher.check_policy(
        tools.policy, password, personal=[display, address, name]
    )

    user = User(
        username=display,
        username_key=username_key(display),
        password_hash=await tools.hasher.hash(normalized_password),
        email_sealed=tools.cipher.seal_optional(address, context=EMAIL_CONTEXT),
        email_index=index,
        display_name_sealed=tools.cipher.seal_optional(
            name, context=DISPLAY_NAME_CONTEXT
        ),
        is_active=True,
        must_change_password=must_change_password,
        roles=roles,
    )
    session.add(user)
    # Another request may take the name between the check above and here.
    await _flush_unique(session, "The username or email address is taken.")
    return user


async def update_profile(
    session: AsyncSession,
    tools: AccountTools,
    user: User,
    *,
    username: str | _Unset = UNSET,
    email: str | None | _Unset = UNSET,
    display_name: str | None | _Unset = UNSET,
) -> list[str]:
    """Change a user's username, email or display name.

    Returns:
        The names of the fields that changed.

    Raises:
        InvalidInput: A value is invalid.
        Conflict: The username or email is taken.
    """
    changed: list[str] = []
    if username is not UNSET:
        display = normalize_username(username)
        if display != user.username:
            await _ensure_username_free(session, display, except_id=user.id)
            user.username = display
            user.username_key = username_key(display)
            changed.append("username")
    if email is not UNSET:
        address = normalize_email(email) if email is not None else None
        if address != read_email(tools.cipher, user):
            index = email_index(tools.cipher, address) if address else None
            if index is not None:
                await _ensure_email_free(session, index, except_id=user.id)
            user.email_sealed = tools.cipher.seal_optional(
                address, context=EMAIL_CONTEXT
            )
            user.email_index = index
            changed.append("email")
    if display_name is not UNSET:
        name = (
            normalize_display_name(display_name) if display_name is not None else None
        )
        if name != read_display_name(tools.cipher, user):
            user.display_name_sealed = tools.cipher.seal_optional(
                name, context=DISPLAY_NAME_CONTEXT
            )
            changed.append("displayName")
    if changed:
        await _flush_unique(session, "The username or email address is taken.")
    return changed


async def set_active(session: AsyncSession, user: User, *, active: bool) -> bool:
    """Activate or deactivate a user; returns whether anything changed.

    Raises:
        Conflict: Deactivating would leave no active user with every permission.
    """
    if user.is_active == active:
        return False
    user.is_active = active
    user.auth_version += 1
    await session.flush()
    if not active:
        now = datetime.now(UTC)
        await revoke_user_sessions(session, user.id, reason="deactivated", now=now)
        if user.is_service_account:
            # Reactivating the account must not bring old keys back.
            from schema.apikeys import revoke_keys_of

            await revoke_keys_of(session, user.id, now=now)
        await ensure_an_admin_remains(session)
    return True


async def delete_user(session: AsyncSession, user: User) -> None:
    """Delete a user.

    Raises:
        Conflict: It would leave no active user with every permission.
    """
    await session.delete(user)
    await session.flush()
    await ensure_an_admin_remains(session)


async def set_roles(
    session: AsyncSession,
    user: User,
    role_names: Iterable[str],
    *,
    actor_permissions: Collection[str],
) -> tuple[list[str], list[str]]:
    """Replace a user's roles.

    Returns:
        The role names added and removed.

    Raises:
        InvalidInput: A role does not exist.
        PermissionDenied: A new role grants a permission the actor lacks.
        Conflict: It would leave no active user with every permission.
    """
    roles = await get_roles_by_name(session, role_names)
    before = set(user.role_names)
    after = {role.name for role in roles}
    added = sorted(after - before)
    for role in roles:
        if role.name in added:
            check_can_grant(actor_permissions, role.permission_names)
    user.roles = roles
    if before != after:
        user.auth_version += 1
    await session.flush()
    await ensure_an_admin_remains(session)
    return added, sorted(before - after)


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The account a successful sign-in identified."""

    user_id: int
    username: str
    must_change_password: bool
    auth_version: int


async def authenticate(
    sessions: async_sessionmaker[AsyncSession],
    tools: AccountTools,
    *,
    username: str,
    password: str,
    max_consecutive_failures: int = 100,
) -> SignedIn:
    """Return the active account that the username and password identify.

    An unknown username, a wrong password, an inactive or locked account and
    a service account raise the same error after the same hash. An account
    locks after `max_consecutive_failures` failed attempts in a row, until an
    admin unlocks it. No
    database connection is held while hashing, so that a flood of sign-ins
    cannot starve other requests of connections. A hash made with weaker
    parameters than the current ones is replaced.

    Raises:
        InvalidCredentials: The credentials do not identify an active user.
    """
    key = username_key(username)
    async with sessions() as session:
        row = (
            await session.execute(
                select(
                    User.id,
                    User.username,
                    User.password_hash,
                    User.is_active,
                    User.must_change_password,
                    User.is_service_account,
                    User.auth_version,
                ).where(User.username_key == key[: MAX_USERNAME_LENGTH + 1])
            )
        ).first()
    failures = 0
    if row is not None:
        # Counted before the hash, atomically, so that parallel attempts each
        # see the ones before them; a success sets it back to zero.
        async with sessions() as session, session.begin():
            failures = (
                await session.execute(
                    update(User)
                    .where(User.id == row.id)
                    .values(failed_logins=User.failed_logins + 1)
                    .returning(User.failed_logins)
                    .execution_options(synchronize_session=False)
                )
            ).scalar_one()
    if row is not None and failures > max_consecutive_failures:
        await tools.hasher.verify(password, None)
        raise InvalidCredentials("locked", row.id)
    matches, needs_rehash = await tools.hasher.verify(
        password, row.password_hash if row is not None else None
    )
    if row is None:
        raise InvalidCredentials("unknown_user")
    if not matches:
        raise InvalidCredentials("wrong_password", row.id)
    if not row.is_active:
        raise InvalidCredentials("inactive", row.id)
    if row.is_service_account:
        raise InvalidCredentials("service_account", row.id)
    values: dict[str, object] = {"failed_logins": 0}
    if needs_rehash:
        values["password_hash"] = await tools.hasher.hash(password)
    async with sessions() as session, session.begin():
        await session.execute(
            update(User)
            .where(User.id == row.id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    return SignedIn(
        user_id=row.id,
        username=row.username,
        must_change_password=row.must_change_password,
        auth_version=row.auth_version,
    )


async def change_password(
    session: AsyncSession,
    tools: AccountTools,
    user: User,
    *,
    current_password: str,
    new_password: str,
) -> None:
    """Set a new password after checking the current one.

    Raises:
        InvalidInput: The current password is wrong (field
            `currentPassword`), or the new one breaks the policy or equals it.
    """
    matches, _ = await tools.hasher.verify(current_password, user.password_hash)
    if not matches:
        raise InvalidInput("currentPassword", "is not your current password.")
    if unicodedata.normalize("NFKC", new_password) == unicodedata.normalize(
        "NFKC", current_password
    ):
        raise InvalidInput("newPassword", "must differ from the current password.")
    await set_password(
        session,
        tools,
        user,
        new_password=new_password,
        personal=[
            user.username,
            read_email(tools.cipher, user),
            read_display_name(tools.cipher, user),
        ],
        field="newPassword",
    )


async def set_password(
    session: AsyncSession,
    tools: AccountTools,
    user: User,
    *,
    new_password: str,
    personal: Sequence[str | None],
    field: str = "password",
) -> None:
    """Replace a user's password after checking it against the policy.

    Raises:
        InvalidInput: The password breaks the policy.
    """
    normalized = await tools.hasher.check_policy(
        tools.policy, new_password, personal=personal, field=field
    )
    user.password_hash = await tools.hasher.hash(normalized)
    user.must_change_password = False
    await _end_access(session, user, reason="password_changed")


async def _end_access(session: AsyncSession, user: User, *, reason: str) -> None:
    """End every token and session of a user, as after a password change."""
    user.auth_version += 1
    user.failed_logins = 0
    await session.flush()
    await revoke_user_sessions(session, user.id, reason=reason, now=datetime.now(UTC))


async def reset_password(session: AsyncSession, tools: AccountTools, user: User) -> str:
    """Give a user a random temporary password that must be changed at sign-in.

    Until it is changed, the user's permissions are withheld (see
    `effective_permissions`), so the temporary password is good for one
    thing only: choosing a new one.

    Returns:
        The temporary password, to be handed to the user once.
    """
    temporary = secrets.token_urlsafe(18)
    user.password_hash = await tools.hasher.hash(temporary)
    user.must_change_password = True
    await _end_access(session, user, reason="password_reset")
    return temporary


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search_users(
    session: AsyncSession,
    cipher: DataCipher,
    *,
    role: str | None = None,
    active: bool | None = None,
    search: str | None = None,
    limit: int,
    offset: int,
) -> tuple[list[User], int]:
    """Return one page of users, ordered by id, and how many match in all.

    `search` matches part of a username, ignoring case, or a whole email
    address exactly (emails are stored sealed, so only exact matches work).
    """
    conditions = []
    if active is not None:
        conditions.append(User.is_active == active)
    if role is not None:
        conditions.append(
            User.id.in_(
                select(user_roles.c.user_id)
                .join(Role, Role.id == user_roles.c.role_id)
                .where(Role.name == role)
            )
        )
    if search:
        matches = [User.username_key.like(_like_pattern(username_key(search)), "\\")]
        if "@" in search:
            matches.append(User.email_index == email_index(cipher, search.strip()))
        conditions.append(or_(*matches))

    total = await session.scalar(
        select(func.count()).select_from(User).where(*conditions)
    )
    users = await session.scalars(
        select(User).where(*conditions).order_by(User.id).limit(limit).offset(offset)
    )
    return list(users), int(total or 0)


async def clear_failed_logins(session: AsyncSession, user: User) -> None:
    """Lift the lock of an account that reached the consecutive-failure cap."""
    user.failed_logins = 0
    await session.flush()

"""User service: creating users, signing them in and loading them."""

import re
import unicodedata
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from schema.errors import Conflict, InvalidCredentials, InvalidInput
from schema.passwords import PasswordPolicy, ThreadedPasswordHasher
from schema.roles import get_roles_by_name
from schema.tables import User

MAX_USERNAME_LENGTH = 64
_USERNAME_PATTERN = re.compile(r"[\w.@+-]+")


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
    return normalized


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


async def create_user(
    session: AsyncSession,
    *,
    username: str,
    password: str,
    role_names: Iterable[str],
    hasher: ThreadedPasswordHasher,
    policy: PasswordPolicy,
) -> User:
    """Create an active user with the given roles.

    Raises:
        InvalidInput: The username, password or a role name is invalid.
        Conflict: A user with the same username, ignoring case and Unicode
            form, exists.
    """
    display = normalize_username(username)
    normalized_password = policy.check(password)
    roles = await get_roles_by_name(session, role_names)
    if await get_user_by_username(session, display) is not None:
        raise Conflict(f"A user named {display!r} already exists.")

    user = User(
        username=display,
        username_key=username_key(display),
        password_hash=await hasher.hash(normalized_password),
        is_active=True,
        roles=roles,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as error:
        # Another request created the same username between the check and here.
        raise Conflict(f"A user named {display!r} already exists.") from error
    return user


async def authenticate(
    session: AsyncSession,
    *,
    username: str,
    password: str,
    hasher: ThreadedPasswordHasher,
) -> User:
    """Return the active user that the username and password identify.

    An unknown username, a wrong password and an inactive account raise the
    same error after the same amount of hashing work, so that a client cannot
    tell which usernames exist.

    Raises:
        InvalidCredentials: The credentials do not identify an active user.
    """
    user = await get_user_by_username(session, username)
    matches, needs_rehash = await hasher.verify(
        password, user.password_hash if user is not None else None
    )
    if user is None:
        raise InvalidCredentials("unknown_user")
    if not matches:
        raise InvalidCredentials("wrong_password", user.id)
    if not user.is_active:
        raise InvalidCredentials("inactive", user.id)
    if needs_rehash:
        user.password_hash = await hasher.hash(password)
        await session.flush()
    return user

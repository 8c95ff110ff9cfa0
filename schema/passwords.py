"""Password policy and hashing.

Passwords are normalized to NFKC before they are checked or hashed, so that
the same password typed on two keyboards gives the same hash. Lengths are
counted in code points after normalization, and a password is never
truncated.
"""

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import anyio
import zxcvbn
from passlib.context import CryptContext

from schema.errors import InvalidInput

# OWASP Password Storage Cheat Sheet: argon2id with at least 19 MiB of memory,
# two passes and one lane.
DEFAULT_MEMORY_COST_KIB = 19 * 1024
DEFAULT_TIME_COST = 2
DEFAULT_PARALLELISM = 1

MAX_PASSWORD_LENGTH = 128


def normalize_password(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """Rules for new passwords: length, strength, and no personal words.

    There are no composition rules. Strength is zxcvbn's score from 0 (too
    guessable) to 4 (very unguessable); zxcvbn ships its own lists of common
    passwords, words and names.
    """

    min_length: int = 12
    max_length: int = MAX_PASSWORD_LENGTH
    min_strength: int = 3

    def check(
        self,
        password: str,
        *,
        personal: Sequence[str | None] = (),
        field: str = "password",
    ) -> str:
        """Validate a new password and return its normalized form.

        Args:
            password: The password as the client sent it.
            personal: The username, email and the like; a password built
                from any of them is rejected.
            field: Input field named in the error.

        Raises:
            InvalidInput: The password breaks a rule, named in the reason.
        """
        normalized = normalize_password(password)
        length = len(normalized)
        if length < self.min_length:
            raise InvalidInput(
                field,
                f"must be at least {self.min_length} characters long (got {length}).",
            )
        if length > self.max_length:
            raise InvalidInput(
                field,
                f"must be at most {self.max_length} characters long (got {length}).",
            )
        folded = normalized.casefold()
        words = _personal_words(personal)
        for word in words:
            if word in folded:
                raise InvalidInput(
                    field, "must not contain your username or email address."
                )
        result = zxcvbn.zxcvbn(
            normalized, user_inputs=sorted(words), max_length=self.max_length
        )
        if result["score"] < self.min_strength:
            feedback = result["feedback"]
            hint = feedback.get("warning") or " ".join(feedback.get("suggestions", []))
            raise InvalidInput(
                field,
                "is too easy to guess"
                + (f": {hint.rstrip('.')}." if hint else ".")
                + " Longer passphrases of uncommon words are stronger.",
            )
        return normalized


def _personal_words(values: Sequence[str | None]) -> set[str]:
    """Return the folded personal strings, and an email's local part, of 3+ chars."""
    words: set[str] = set()
    for value in values:
        if not value:
            continue
        folded = normalize_password(value).casefold()
        words.add(folded)
        local, at, _domain = folded.partition("@")
        if at:
            words.add(local)
    return {word for word in words if len(word) >= 3}


class PasswordHasher:
    """Hashes and verifies passwords with argon2id through passlib.

    Verification also reports whether the stored hash uses weaker parameters
    than the current ones, so that it can be replaced at the next login.
    """

    def __init__(
        self,
        *,
        memory_cost_kib: int = DEFAULT_MEMORY_COST_KIB,
        time_cost: int = DEFAULT_TIME_COST,
        parallelism: int = DEFAULT_PARALLELISM,
    ) -> None:
        self._context = CryptContext(
            schemes=["argon2"],
            argon2__type="ID",
            argon2__memory_cost=memory_cost_kib,
            argon2__rounds=time_cost,
            argon2__parallelism=parallelism,
        )
        # Verifying against this hash when a username is unknown makes a login
        # for a missing user cost as much as a login with a wrong password.
        self._dummy_hash = self._context.hash("fieldguard-timing-equalizer")

    def hash(self, password: str) -> str:
        return self._context.hash(normalize_password(password))

    def verify(self, password: str, password_hash: str | None) -> tuple[bool, bool]:
        """Check a password against a stored hash.

        Args:
            password: The password as the client sent it.
            password_hash: The stored hash, or None for an unknown user; a
                dummy hash is then verified so that the call takes as long.

        Returns:
            Whether the password matches, and whether the stored hash should
            be replaced by one with the current parameters.
        """
        normalized = normalize_password(password)
        if len(normalized) > MAX_PASSWORD_LENGTH:
            # No stored password can be this long; hash the dummy anyway so
            # that the time taken does not reveal the rule.
            self._context.verify("x", self._dummy_hash)
            return False, False
        if password_hash is None:
            self._context.verify(normalized, self._dummy_hash)
            return False, False
        matches = self._context.verify(normalized, password_hash)
        return matches, matches and self._context.needs_update(password_hash)


class ThreadedPasswordHasher:
    """Runs a `PasswordHasher` in worker threads, a bounded number at a time.

    An argon2 hash takes tens of milliseconds and 19 MiB of memory, so hashing
    on the event loop would stall every other request, and unbounded hashing
    under a login flood would exhaust memory.
    """

    def __init__(self, hasher: PasswordHasher, *, max_concurrent: int) -> None:
        self.hasher = hasher
        self._max_concurrent = max_concurrent
        self._limiter: anyio.CapacityLimiter | None = None

    def _get_limiter(self) -> anyio.CapacityLimiter:
        # Created on first use because it must belong to the running event loop.
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._max_concurrent)
        return self._limiter

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(
            self.hasher.hash, password, limiter=self._get_limiter()
        )

    async def check_policy(
        self,
        policy: PasswordPolicy,
        password: str,
        *,
        personal: Sequence[str | None],
        field: str = "password",
    ) -> str:
        """Run `policy.check` in a worker thread; zxcvbn can take 0.4 s."""
        return await anyio.to_thread.run_sync(
            partial(policy.check, password, personal=personal, field=field),
            limiter=self._get_limiter(),
        )

    async def verify(
        self, password: str, password_hash: str | None
    ) -> tuple[bool, bool]:
        return await anyio.to_thread.run_sync(
            self.hasher.verify, password, password_hash, limiter=self._get_limiter()
        )

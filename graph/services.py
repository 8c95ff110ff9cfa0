"""Long-lived service objects and how they are built from settings."""

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from graph.settings import Settings, read_data_keys_file
from graph.tokens import TokenSettings
from ml.errors import ModelUnavailable
from ml.registry import LoadedModel, active_marker, load_active
from schema.clock import Clock, OffsetClock
from schema.crypto import DataCipher
from schema.passwords import PasswordHasher, PasswordPolicy, ThreadedPasswordHasher
from schema.sessions import SessionPolicy
from schema.throttle import (
    LoginThrottle,
    PredictionQuota,
    ThrottlePolicy,
    create_storage,
)
from schema.users import AccountTools

logger = logging.getLogger(__name__)


class ModelHolder:
    """The active version of the served model, swapped without a restart.

    Requests take `current()` once and keep that object, so a swap never
    mixes versions within a request. Every process checks the model's
    ACTIVE file at most once a second, so an activation made through
    another worker or replica reaches it within about a second.
    """

    CHECK_INTERVAL_SECONDS = 1.0

    def __init__(self, model_dir: Path, name: str, loaded: LoadedModel) -> None:
        self.model_dir = model_dir
        self.name = name
        self._current = loaded
        self._marker = active_marker(model_dir, name)
        self._checked = time.monotonic()

    def current(self) -> LoadedModel:
        now = time.monotonic()
        if now - self._checked >= self.CHECK_INTERVAL_SECONDS:
            self._checked = now
            marker = active_marker(self.model_dir, self.name)
            if marker != self._marker:
                try:
                    self._current = load_active(self.model_dir, self.name)
                except ModelUnavailable as error:
                    logger.error("Keeping the current model: %s", error)
                self._marker = marker
        return self._current

    def replace(self, loaded: LoadedModel) -> None:
        self._current = loaded
        self._marker = active_marker(self.model_dir, self.name)


class PermissionCache:
    """A bounded map of (user id, auth version) to roles and permissions."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[
            tuple[int, int], tuple[tuple[str, ...], frozenset[str]]
        ]
        self._entries = OrderedDict()

    def get(
        self, key: tuple[int, int]
    ) -> tuple[tuple[str, ...], frozenset[str]] | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(
        self, key: tuple[int, int], value: tuple[tuple[str, ...], frozenset[str]]
    ) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


@dataclass(slots=True)
class Services:
    """Long-lived service objects, built at start-up."""

    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    tokens: TokenSettings
    accounts: AccountTools
    models: "ModelHolder"
    clock: Clock
    session_policy: SessionPolicy
    throttle: LoginThrottle
    quota: PredictionQuota
    # Permissions by (user id, auth version): a new version, which every role
    # change brings, makes old entries unreachable.
    permission_cache: PermissionCache

    @property
    def cipher(self) -> DataCipher:
        return self.accounts.cipher

    @property
    def model(self) -> LoadedModel:
        """The active model version; read once per request and kept."""
        return self.models.current()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """Open a session in a transaction, committed when the block succeeds."""
        async with self.session_factory() as session, session.begin():
            yield session


def build_clock(settings: Settings) -> Clock:
    if settings.clock_offset_file is not None:
        return OffsetClock(settings.clock_offset_file)
    return Clock()


def build_session_policy(settings: Settings) -> SessionPolicy:
    return SessionPolicy(
        idle_timeout=timedelta(minutes=settings.session_idle_minutes),
        absolute_lifetime=timedelta(hours=settings.session_absolute_hours),
        reuse_grace=timedelta(seconds=settings.refresh_grace_seconds),
    )


def build_quota(settings: Settings, throttle: LoginThrottle) -> PredictionQuota:
    return PredictionQuota(throttle.storage, settings.predict_rows_per_minute)


def build_throttle(settings: Settings) -> LoginThrottle:
    return LoginThrottle(
        create_storage(settings.redis_url, key_prefix=settings.redis_key_prefix),
        ThrottlePolicy(
            window_minutes=settings.login_window_minutes,
            account_failures_before_delay=settings.login_failures_before_delay,
            account_failures_to_lock=settings.login_failures_to_lock,
            ip_failures_to_lock=settings.login_ip_failures_to_lock,
        ),
    )


def build_account_tools(settings: Settings) -> AccountTools:
    """Build the cipher, hasher and password policy that account changes use."""
    hasher = PasswordHasher(
        memory_cost_kib=settings.argon2_memory_cost_kib,
        time_cost=settings.argon2_time_cost,
        parallelism=settings.argon2_parallelism,
    )
    return AccountTools(
        cipher=build_cipher(settings),
        hasher=ThreadedPasswordHasher(
            hasher, max_concurrent=settings.max_concurrent_hashes
        ),
        policy=PasswordPolicy(min_length=settings.password_min_length),
    )


def build_cipher(settings: Settings) -> DataCipher:
    keys = settings.load_data_keys()
    if settings.data_keys is not None:
        return DataCipher(keys)
    # Development keys live in a file that `fieldguard rotate-data-key` can
    # extend while workers run; they reload it on meeting a new key id.
    path = settings.data_keys_path
    return DataCipher(keys, reload=lambda: read_data_keys_file(path))


def token_settings(settings: Settings) -> TokenSettings:
    common = {
        "issuer": settings.jwt_issuer,
        "audience": settings.jwt_audience,
        "ttl_seconds": settings.access_token_ttl_seconds,
        "leeway_seconds": settings.token_leeway_seconds,
    }
    if settings.jwt_algorithm == "HS256":
        return TokenSettings(secret=settings.signing_secret(), **common)
    private_keys = settings.load_private_keys()
    return TokenSettings(
        secret="",
        algorithm=settings.jwt_algorithm,
        signing_kid=next(iter(private_keys)),
        private_keys=private_keys,
        public_keys={kid: key.public_key() for kid, key in private_keys.items()},
        **common,
    )

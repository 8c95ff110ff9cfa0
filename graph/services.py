"""Long-lived service objects and how they are built from settings."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from graph.caching import LruCache
from graph.metrics import JOINED_ROWS
from graph.settings import Settings, read_data_keys_file
from graph.tokens import TokenSettings, VerifiedTokens
from ml.batcher import RowBatcher
from ml.errors import ModelUnavailable
from ml.metadata import ModelShape
from ml.registry import LoadedModel, active_marker, load_active
from schema.audit import AuditBuffer
from schema.clock import Clock, OffsetClock
from schema.crypto import DataCipher
from schema.errors import NotFound
from schema.passwords import PasswordHasher, PasswordPolicy, ThreadedPasswordHasher
from schema.revocation import Marker
from schema.sessions import SessionPolicy, touch
from schema.throttle import (
    LoginThrottle,
    PredictionQuota,
    ThrottlePolicy,
    create_storage,
)
from schema.users import AccountTools

logger = logging.getLogger(__name__)


class ModelHolder:
    """The active version of one served model, swapped without a restart.

    Requests take `current()`, or `batcher()` with the version in it, once
    and keep that object, so a swap never mixes versions within a request
    or within a batch of rows. Every process checks the model's
    ACTIVE file at most once a second, so an activation made through
    another worker or replica reaches it within about a second. A version
    whose features differ from the schema's is never taken up: it needs a
    restart, which rebuilds the schema.
    """

    CHECK_INTERVAL_SECONDS = 1.0

    def __init__(self, model_dir: Path, name: str, loaded: LoadedModel) -> None:
        self.model_dir = model_dir
        self.name = name
        self.shape = loaded.metadata.shape
        self._current = _batcher(loaded)
        self._marker = active_marker(model_dir, name)
        self._checked = time.monotonic()

    def current(self) -> LoadedModel:
        return self.batcher().model

    def batcher(self) -> RowBatcher:
        """Return the active version's batcher, taking up a new version first
        when the ACTIVE file changed."""
        now = time.monotonic()
        if now - self._checked >= self.CHECK_INTERVAL_SECONDS:
            self._checked = now
            marker = active_marker(self.model_dir, self.name)
            if marker != self._marker:
                try:
                    self._take(load_active(self.model_dir, self.name))
                except ModelUnavailable as error:
                    logger.error("Keeping the current model: %s", error)
                self._marker = marker
        return self._current

    def check(self, loaded: LoadedModel) -> None:
        """Raise ModelUnavailable when `loaded` cannot replace the current version."""
        if loaded.metadata.shape != self.shape:
            raise ModelUnavailable(
                f"Model {self.name!r} version {loaded.metadata.version} has other "
                "features or another task than the version this service started "
                "with; restart the service to serve it."
            )

    def _take(self, loaded: LoadedModel) -> None:
        self.check(loaded)
        self._current = _batcher(loaded)

    def replace(self, loaded: LoadedModel) -> None:
        self._take(loaded)
        self._marker = active_marker(self.model_dir, self.name)


def _batcher(loaded: LoadedModel) -> RowBatcher:
    """Return a batcher for `loaded` that counts its calls' rows in /metrics."""
    metadata = loaded.metadata
    series = JOINED_ROWS.labels(model=metadata.name, version=metadata.version)
    return RowBatcher(loaded, observe=series.observe)


class ServedModels:
    """Every served model by name, each with its active version."""

    def __init__(self, model_dir: Path, loaded: dict[str, LoadedModel]) -> None:
        self.model_dir = model_dir
        self.holders = {
            name: ModelHolder(model_dir, name, model) for name, model in loaded.items()
        }

    @property
    def shapes(self) -> tuple[ModelShape, ...]:
        return tuple(holder.shape for holder in self.holders.values())

    def holder(self, name: str) -> ModelHolder:
        """Raise NotFound for a model this service does not serve."""
        holder = self.holders.get(name)
        if holder is None:
            raise NotFound(f"No served model named {name!r}.")
        return holder

    def current(self, name: str) -> LoadedModel:
        return self.holder(name).current()

    def batcher(self, name: str) -> RowBatcher:
        return self.holder(name).batcher()


# Roles and permissions by (user id, auth version): a new version, which
# every role change brings, makes old entries unreachable.
Grants = tuple[tuple[str, ...], frozenset[str]]
PermissionCache = LruCache[tuple[int, int], Grants]


class AccessCache:
    """Sign-in state by session id, kept while the change marker is the same.

    Each entry carries the marker it was read under. Every commit touching
    users, roles, sessions or API keys changes the marker, so all entries
    become stale at once.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: LruCache[str, tuple[object, Any]] = LruCache(max_entries)

    def get(self, key: str, marker: object) -> Any:
        if marker is None:
            return None
        entry = self._entries.get(key)
        if entry is None or entry[0] != marker:
            return None
        return entry[1]

    def put(self, key: str, marker: object, value: Any) -> None:
        self._entries.put(key, (marker, value))


@dataclass(slots=True)
class Services:
    """Long-lived service objects, built at start-up."""

    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    tokens: TokenSettings
    accounts: AccountTools
    models: ServedModels
    clock: Clock
    session_policy: SessionPolicy
    throttle: LoginThrottle
    quota: PredictionQuota
    permission_cache: PermissionCache
    audit_buffer: AuditBuffer
    # Shared by the processes of one SQLite database; None for PostgreSQL,
    # where every request checks the database.
    change_marker: Marker | None = None
    access_cache: AccessCache = field(default_factory=AccessCache)
    verified_tokens: VerifiedTokens = field(init=False)

    touching: set[str] = field(default_factory=set)
    # The event loop keeps only weak references to tasks.
    touch_tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.verified_tokens = VerifiedTokens(self.tokens)

    def touch_later(self, session_id: str, now: datetime) -> None:
        """Record a session's activity in the background, once at a time.

        The idle timeout needs the last use only to within a minute, so
        requests do not wait for this write. With SQLite, many requests
        writing the same row at once used to wait on each other's locks.
        """
        if session_id in self.touching:
            return
        self.touching.add(session_id)
        task = asyncio.get_running_loop().create_task(self._touch(session_id, now))
        self.touch_tasks.add(task)
        task.add_done_callback(self.touch_tasks.discard)

    async def _touch(self, session_id: str, now: datetime) -> None:
        try:
            async with self.session_factory() as session:
                await touch(session, session_id, now)
                await session.commit()
        except Exception as error:  # noqa: BLE001 - retried on the next request
            logger.warning(
                "Recording the activity of session %s... failed: %s",
                session_id[:8],
                type(error).__name__,
            )
        finally:
            self.touching.discard(session_id)

    @property
    def cipher(self) -> DataCipher:
        return self.accounts.cipher

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

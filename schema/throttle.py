"""Throttling of failed sign-ins, per account and per client IP.

Counters live in the `limits` package's storage: in process memory by
default, or in Redis so that every worker and replica counts alike. Every
attempt within the window counts, and a successful sign-in clears its
account's count; after a few, every attempt waits a growing delay, and after
more the account or IP is locked until the oldest attempts leave the window.
The caller reports one generic error for all of it.
"""

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import (
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    window_minutes: int = 15
    account_failures_before_delay: int = 3
    account_failures_to_lock: int = 10
    ip_failures_to_lock: int = 100
    base_delay_seconds: float = 0.25
    max_delay_seconds: float = 4.0


@dataclass(frozen=True, slots=True)
class ThrottleDecision:
    locked: bool
    delay_seconds: float
    reason: str | None = None


class ThrottleUnavailable(Exception):
    """The shared counter store did not respond."""


def _bounded(account_key: str) -> str:
    """Return a fixed-length counter key, however long the username typed."""
    return hashlib.sha256(account_key.encode("utf-8")).hexdigest()


class _MemoryStorage(MemoryStorage):
    """limits' memory storage with a `clear` that its expiry task survives.

    In limits 5.8 the background expiry task reads `events[key]` after an
    await, so a `clear` that pops the key in between makes the task raise
    KeyError, which asyncio logs with a traceback. Emptying the list in
    place leaves the key for the task to drop.
    """

    async def clear(self, key: str) -> None:
        self.storage.pop(key, None)
        self.expirations.pop(key, None)
        if key in self.events:
            self.events[key] = []


def create_storage(redis_url: str | None, *, key_prefix: str = "fieldguard") -> Storage:
    if redis_url:
        # redis-py is already a dependency; limits defaults to coredis.
        return RedisStorage(
            redis_url.replace("redis://", "async+redis://", 1)
            if redis_url.startswith("redis://")
            else redis_url,
            implementation="redispy",
            key_prefix=key_prefix,
            wrap_exceptions=True,
        )
    return _MemoryStorage(wrap_exceptions=True)


class LoginThrottle:
    """Counts failed sign-ins and decides whether the next one may proceed."""

    def __init__(self, storage: Storage, policy: ThrottlePolicy) -> None:
        self.storage = storage
        self.policy = policy
        self._limiter = MovingWindowRateLimiter(storage)
        # Items are sized at the lock thresholds: a full window means locked.
        self._account = RateLimitItemPerMinute(
            policy.account_failures_to_lock, policy.window_minutes
        )
        self._ip = RateLimitItemPerMinute(
            policy.ip_failures_to_lock, policy.window_minutes
        )

    async def admit(self, account_key: str, client_ip: str | None) -> ThrottleDecision:
        """Count a sign-in attempt and decide on it, before its password is checked.

        The attempt is counted first and the decision read from the count, in
        one step per counter, so that requests sent at the same moment cannot
        all read a clean count. A successful sign-in then clears the account's
        count with `reset_account`; the IP's count keeps every attempt.

        Raises:
            ThrottleUnavailable: The counter store failed.
        """
        key = _bounded(account_key)
        try:
            account_ok = await self._limiter.hit(self._account, "login-account", key)
            ip_ok = (
                await self._limiter.hit(self._ip, "login-ip", client_ip)
                if client_ip
                else True
            )
            stats = await self._limiter.get_window_stats(
                self._account, "login-account", key
            )
        except Exception as error:  # noqa: BLE001 - any store failure
            raise ThrottleUnavailable(str(error)) from error
        if not account_ok:
            return ThrottleDecision(
                locked=True, delay_seconds=0, reason="account_locked"
            )
        if not ip_ok:
            return ThrottleDecision(locked=True, delay_seconds=0, reason="ip_locked")
        # This attempt is included: the earlier ones are the possible failures.
        earlier = self.policy.account_failures_to_lock - stats.remaining - 1
        extra = earlier - self.policy.account_failures_before_delay
        if extra < 0:
            return ThrottleDecision(locked=False, delay_seconds=0)
        delay = min(
            self.policy.base_delay_seconds * 2**extra, self.policy.max_delay_seconds
        )
        return ThrottleDecision(locked=False, delay_seconds=delay)

    async def reset_account(self, account_key: str) -> None:
        try:
            await self._limiter.clear(
                self._account, "login-account", _bounded(account_key)
            )
        except Exception as error:  # noqa: BLE001 - any store failure
            raise ThrottleUnavailable(str(error)) from error


class QuotaExceeded(Exception):
    """A caller asked for more rows than its quota allows right now.

    Attributes:
        limit: Rows allowed per minute.
        retry_after: Seconds until the window has room again.
    """

    def __init__(self, limit: int, retry_after: float) -> None:
        super().__init__(f"quota of {limit} rows a minute exceeded")
        self.limit = limit
        self.retry_after = retry_after


class LocalRowCounter:
    """Sliding-window row counts of one process, as `limits` keeps them.

    A caller's count is the current minute's rows plus the previous
    minute's, weighted by the share of that minute still inside the last 60
    seconds. With the quota in process memory, this does in a few dict
    operations what the `limits` storage does through locks and coroutines.
    """

    WINDOW_SECONDS = 60.0
    # Callers idle for two windows are dropped once the table is this large.
    SWEEP_SIZE = 4096

    def __init__(self, limit: int, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self._clock = clock
        # caller -> [window number, previous window's rows, this window's rows]
        self._windows: dict[str, list[int]] = {}

    def take(self, caller: str, rows: int) -> float | None:
        """Count `rows`, or return the seconds to wait when they do not fit."""
        now = self._clock()
        window = int(now // self.WINDOW_SECONDS)
        entry = self._windows.get(caller)
        if entry is None:
            if len(self._windows) >= self.SWEEP_SIZE:
                self._sweep(window)
            entry = self._windows[caller] = [window, 0, 0]
        elif entry[0] != window:
            previous = entry[2] if entry[0] == window - 1 else 0
            entry[0], entry[1], entry[2] = window, previous, 0
        end = (window + 1) * self.WINDOW_SECONDS
        weight = (end - now) / self.WINDOW_SECONDS
        if (
            rows <= self.limit
            and int(entry[1] * weight) + entry[2] + rows <= self.limit
        ):
            entry[2] += rows
            return None
        return self._wait(entry[1], entry[2], rows, now, end)

    def _wait(
        self, previous: int, current: int, rows: int, now: float, end: float
    ) -> float:
        """Seconds until `rows` would fit, at most two windows."""
        window = self.WINDOW_SECONDS
        room = self.limit - current - rows
        if rows > self.limit:
            return window
        if room >= 0 and previous:
            # In this window, once enough of the previous one has slid out.
            return max(0.0, end - room * window / previous - now)
        # In the next window, the current count becomes the weighted one.
        room = self.limit - rows
        if current == 0:
            return max(0.0, end - now)
        return min(2 * window, max(0.0, end + window - room * window / current - now))

    def _sweep(self, window: int) -> None:
        for caller in [
            c for c, entry in self._windows.items() if entry[0] < window - 1
        ]:
            del self._windows[caller]


class PredictionQuota:
    """Rows each caller may predict per minute, counted in the shared store.

    With the store in process memory, a `LocalRowCounter` counts instead of
    the `limits` storage: the same sliding window, at a fraction of the cost
    on every prediction.
    """

    def __init__(self, storage: Storage, rows_per_minute: int) -> None:
        self.rows_per_minute = rows_per_minute
        # A sliding window of two counters: constant work per request, where a
        # moving window would keep one entry per predicted row.
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._item = RateLimitItemPerMinute(rows_per_minute)
        self._local = (
            LocalRowCounter(rows_per_minute)
            if isinstance(storage, MemoryStorage)
            else None
        )

    async def take(self, caller: str, rows: int) -> None:
        """Count `rows` against the caller's quota.

        Raises:
            QuotaExceeded: The rows do not fit in the last minute's window;
                nothing is counted then.
            ThrottleUnavailable: The counter store failed.
        """
        if self._local is not None:
            wait = self._local.take(caller, rows)
            if wait is None:
                return
            raise QuotaExceeded(self.rows_per_minute, wait)
        try:
            allowed = await self._limiter.hit(
                self._item, "predict-rows", caller, cost=rows
            )
            if allowed:
                return
            stats = await self._limiter.get_window_stats(
                self._item, "predict-rows", caller
            )
        except Exception as error:  # noqa: BLE001 - any store failure
            raise ThrottleUnavailable(str(error)) from error
        raise QuotaExceeded(
            self.rows_per_minute, max(0.0, stats.reset_time - time.time())
        )

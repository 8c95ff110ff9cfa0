"""The time source of sessions and tokens, which tests can move forward."""

from datetime import UTC, datetime, timedelta
from pathlib import Path


class Clock:
    """The system clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class OffsetClock(Clock):
    """The system clock plus a number of seconds read from a file at each call.

    Tests of idle and absolute session expiry write to the file to move a
    running server's time forward. A missing or empty file means no offset.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def now(self) -> datetime:
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            text = ""
        offset = float(text) if text else 0.0
        return datetime.now(UTC) + timedelta(seconds=offset)


def as_utc(moment: datetime) -> datetime:
    """Attach UTC to a datetime read back naive; SQLite drops the zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

"""A shared marker that changes whenever sign-in state may have changed.

Checking a token against the database on every request costs a round trip.
Processes may instead keep what they read, for as long as this marker stays
the same: every commit that touches users, roles, sessions or API keys
replaces it, in whichever process the commit ran. Reading it is one `stat`
call.

With SQLite, the marker is a file beside the database, so it is shared by
every process using that database: workers and the command line alike.

With PostgreSQL, triggers on those tables send a notice on a channel when a
transaction that changed them commits, and each process listens for it
(`ChangeListener`). The marker is then a count of the notices received, so
a change reaches other processes once its notice arrives, normally within
milliseconds. While the listening connection is down, there is no marker
and the database is checked on every request.
"""

import asyncio
import logging
import os
import secrets
from pathlib import Path
from typing import Any, Protocol

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from schema.tables import ApiKey, Role, User
from schema.tables import Session as SessionRow

logger = logging.getLogger(__name__)

# Tables whose changes can end a token or change what it may do.
WATCHED_TABLES = frozenset(
    {"users", "roles", "user_roles", "role_permissions", "sessions", "api_keys"}
)
WATCHED_CLASSES = (User, Role, SessionRow, ApiKey)
CHANGED = "fieldguard_auth_changed"
# The PostgreSQL notice channel, which the 0005 migration's triggers use.
CHANNEL = "fieldguard_auth_changed"
# The listening connection's application name, followed by the process id,
# as pg_stat_activity shows it.
LISTENER_NAME = "fieldguard-change-listener"


class Marker(Protocol):
    def current(self) -> object | None:
        """Return the marker, or None when changes cannot be seen right now."""


class ChangeMarker:
    """The marker file: `current()` reads it, `bump()` replaces it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            self.bump()

    def current(self) -> tuple[int, int] | None:
        """Return the file's identity, or None when it cannot be read."""
        try:
            status = os.stat(self.path)
        except OSError:
            return None
        return status.st_ino, status.st_mtime_ns

    def bump(self) -> None:
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            temporary.write_text(secrets.token_hex(8), encoding="ascii")
            os.replace(temporary, self.path)
        except OSError as error:
            # Readers then see None or an old marker; None disables caching.
            logger.error("Cannot replace %s: %s", self.path, error)
            self.path.unlink(missing_ok=True)


_MARKERS: dict[str, ChangeMarker] = {}


def marker_for(url: URL) -> ChangeMarker | None:
    """Return the marker of a database: a file beside a SQLite database,
    None for other databases and for SQLite in memory."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    database = str(Path(url.database).resolve())
    marker = _MARKERS.get(database)
    if marker is None:
        marker = _MARKERS[database] = ChangeMarker(Path(database + ".auth-marker"))
    return marker


class ChangeListener:
    """The marker of a PostgreSQL database: the count of change notices.

    `start` runs a task that keeps one connection listening on CHANNEL and
    reconnects after a failure. Trigger notices have an empty payload, and
    each one moves the count. Before the first use and then every
    `probe_seconds`, the listener sends itself a notice with a random
    payload and expects it back within `probe_seconds`. A connection that
    stopped responding fails this probe, and so does a pooler that runs
    LISTEN and NOTIFY on different server connections. The count also moves
    on each new connection, as notices sent while none was listening are
    lost.

    NOTE: if the connection stops delivering notices without failing, a
    change can go unseen for up to twice `probe_seconds`.
    """

    def __init__(self, conninfo: str, *, probe_seconds: float = 2.0) -> None:
        self._conninfo = conninfo
        self._probe_seconds = probe_seconds
        self._count = 0
        self._listening = False
        self._task: asyncio.Task[None] | None = None

    def current(self) -> int | None:
        return self._count if self._listening else None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="change-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - any connection failure
                if self._listening:
                    failures = 0
                failures += 1
                if failures == 1 or failures % 60 == 0:
                    logger.warning(
                        "Process %s is not listening for sign-in changes "
                        "(attempt %s): %s: %s; it reads the database on every "
                        "request until it listens again",
                        os.getpid(),
                        failures,
                        type(error).__name__,
                        _describe(error),
                    )
            finally:
                self._listening = False
            await asyncio.sleep(min(5.0, 0.2 * 2 ** min(failures, 5)))

    async def _listen(self) -> None:
        connection = await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=5,
            application_name=f"{LISTENER_NAME} {os.getpid()}",
        )
        async with connection:
            await connection.execute(f"LISTEN {CHANNEL}")
            await self._probe(connection)
            self._count += 1
            self._listening = True
            logger.info(
                "Process %s is listening for sign-in changes on %s",
                os.getpid(),
                CHANNEL,
            )
            while True:
                async for notice in connection.notifies(timeout=self._probe_seconds):
                    if not notice.payload:
                        self._count += 1
                await self._probe(connection)

    async def _probe(self, connection: psycopg.AsyncConnection[Any]) -> None:
        """Send a notice to this connection and wait for it.

        Raises:
            TimeoutError: It did not come back within `probe_seconds`.
        """
        payload = f"probe {secrets.token_hex(8)}"
        async with asyncio.timeout(self._probe_seconds):
            await self._send_probe(connection, payload)
            async for notice in connection.notifies():
                if not notice.payload:
                    self._count += 1
                elif notice.payload == payload:
                    return

    async def _send_probe(
        self, connection: psycopg.AsyncConnection[Any], payload: str
    ) -> None:
        await connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))


def _describe(error: Exception) -> str:
    """Describe a listening failure without echoing the connection string."""
    if isinstance(error, TimeoutError):
        return "no answer or probe notice in time"
    if isinstance(error, psycopg.OperationalError):
        # The server's or libpq's message: host, port, user, never a password.
        return str(error).strip()[:200]
    return "see the exception type"


def listener_for(url: URL) -> ChangeListener | None:
    """Return a change listener for a PostgreSQL database, None for others."""
    if url.get_backend_name() != "postgresql":
        return None
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return ChangeListener(conninfo)


class ServiceSession(Session):
    """The ORM session of fieldguard; its commits bump the database's marker."""


@event.listens_for(ServiceSession, "before_flush")
def _note_objects(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    for instance in (*session.new, *session.dirty, *session.deleted):
        if isinstance(instance, WATCHED_CLASSES):
            session.info[CHANGED] = True
            return


@event.listens_for(ServiceSession, "do_orm_execute")
def _note_statements(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete or state.is_insert):
        return
    table = getattr(state.statement, "table", None)
    if getattr(table, "name", None) in WATCHED_TABLES:
        state.session.info[CHANGED] = True


@event.listens_for(ServiceSession, "after_commit")
def _bump(session: Session) -> None:
    if session.info.pop(CHANGED, False) and session.bind is not None:
        marker = marker_for(session.bind.engine.url)
        if marker is not None:
            marker.bump()


@event.listens_for(ServiceSession, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(CHANGED, None)

"""A shared marker that changes whenever sign-in state may have changed.

Checking a token against the database on every request costs a round trip.
Processes may instead keep what they read, for as long as this marker stays
the same: every commit that touches users, roles, sessions or API keys
replaces it, in whichever process the commit ran. Reading it is one `stat`
call.

The marker is a file beside a SQLite database, so it is shared by every
process using that database: workers and the command line alike. With
PostgreSQL, whose services may span machines, there is no marker and the
database is checked on every request.
"""

import logging
import os
import secrets
from pathlib import Path
from typing import Any

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

"""Database engines, sessions and migrations.

A database URL is given in its plain form (`sqlite:///path.db`,
`postgresql://user@host/db`). This module picks the driver for each use, so
migrations run synchronously and the service runs on asyncio drivers.
"""

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

_DRIVERS = {
    # backend: (synchronous driver, asyncio driver)
    "sqlite": ("pysqlite", "aiosqlite"),
    "postgresql": ("psycopg", "psycopg"),
}


def _with_driver(url: str, *, asynchronous: bool) -> URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in _DRIVERS:
        supported = ", ".join(sorted(_DRIVERS))
        raise ValueError(
            f"Unsupported database URL backend {backend!r}; use one of: {supported}."
        )
    sync_driver, async_driver = _DRIVERS[backend]
    return parsed.set(
        drivername=f"{backend}+{async_driver if asynchronous else sync_driver}"
    )


def _enable_sqlite_foreign_keys(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        # In the default journal mode, a commit waits for every reader, and a
        # reader waiting to write waits for that commit: under load both give
        # up after the busy timeout. Write-ahead logging lets readers and one
        # writer proceed together. The mode is stored in the database file, so
        # a connection that cannot switch (another holds a lock) finds it set.
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except Exception as error:  # noqa: BLE001 - the driver's own error type
            logger.warning("Could not switch SQLite to WAL mode: %s", error)
        cursor.close()


def create_sync_engine(url: str) -> Engine:
    """Create a synchronous engine, used by migrations and maintenance commands."""
    engine = create_engine(_with_driver(url, asynchronous=False))
    if engine.dialect.name == "sqlite":
        _enable_sqlite_foreign_keys(engine)
    return engine


def create_service_engine(url: str, *, pool_size: int = 5) -> AsyncEngine:
    """Create the asyncio engine that serves requests."""
    target = _with_driver(url, asynchronous=True)
    options: dict[str, object] = {"pool_pre_ping": True}
    if target.get_backend_name() == "postgresql":
        options["pool_size"] = pool_size
    engine = create_async_engine(target, **options)
    if engine.dialect.name == "sqlite":
        _enable_sqlite_foreign_keys(engine.sync_engine)
    return engine


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    from schema.revocation import ServiceSession

    return async_sessionmaker(
        engine, expire_on_commit=False, sync_session_class=ServiceSession
    )


def ensure_sqlite_directory(url: str) -> None:
    """Create a SQLite file, readable by its owner only, if it does not exist yet.

    The file contains password hashes, so it must not be readable by every
    local user, whatever the umask.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (
        None,
        "",
        ":memory:",
    ):
        return
    path = Path(parsed.database)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        path.touch(mode=0o600)


def _alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision` (the latest by default)."""
    ensure_sqlite_directory(url)
    command.upgrade(_alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Downgrade the database at `url` to `revision` (empty by default)."""
    command.downgrade(_alembic_config(url), revision)


def migration_state(url: str) -> tuple[str | None, str]:
    """Return the database's current revision and the latest known revision."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config(url)).get_current_head()
    engine = create_sync_engine(url)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    assert head is not None
    return current, head

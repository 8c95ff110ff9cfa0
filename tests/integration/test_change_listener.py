"""PostgreSQL change notices: each commit touching sign-in state reaches the
listener of every process, and a lost connection stops the caching."""

import asyncio
import os
import secrets
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import make_url, text

from schema.database import create_sync_engine, migrate
from schema.revocation import LISTENER_NAME, ChangeListener, listener_for
from tests.conftest import POSTGRES_URL, _postgres_schema_url

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL, reason="needs FIELDGUARD_TEST_DATABASE_URL"
)


@pytest.fixture
def database_url() -> Iterator[str]:
    schema = f"fieldguard_notice_{secrets.token_hex(4)}"
    admin = create_sync_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = _postgres_schema_url(POSTGRES_URL, schema)
    migrate(url)
    try:
        yield url
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


async def _until(check, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the listener did not get there in time"
        await asyncio.sleep(0.02)


async def _listening(url: str) -> ChangeListener:
    listener = listener_for(make_url(url))
    assert listener is not None
    listener.start()
    await _until(lambda: listener.current() is not None)
    return listener


def _execute(url: str, statement: str, *, commit: bool = True) -> None:
    engine = create_sync_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text(statement))
            if commit:
                connection.commit()
            else:
                connection.rollback()
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("UPDATE users SET failed_logins = failed_logins", id="users"),
        pytest.param("DELETE FROM sessions WHERE false", id="sessions"),
        pytest.param("DELETE FROM user_roles WHERE false", id="user-roles"),
        pytest.param("UPDATE api_keys SET name = name", id="api-keys"),
    ],
)
async def test_committed_change_moves_the_marker(database_url: str, statement: str):
    listener = await _listening(database_url)
    try:
        before = listener.current()
        await asyncio.to_thread(_execute, database_url, statement)

        await _until(lambda: listener.current() != before)
        assert listener.current() is not None
    finally:
        await listener.stop()


async def test_rolled_back_change_leaves_the_marker(database_url: str):
    listener = await _listening(database_url)
    try:
        before = listener.current()
        await asyncio.to_thread(
            _execute, database_url, "UPDATE users SET failed_logins = 0", commit=False
        )
        await asyncio.to_thread(
            _execute, database_url, "UPDATE audit_events SET id = id"
        )
        await asyncio.sleep(0.5)

        assert listener.current() == before
    finally:
        await listener.stop()


async def test_lost_connection_stops_caching_until_back(database_url: str):
    listener = await _listening(database_url)
    try:
        before = listener.current()
        ended = await asyncio.to_thread(_terminate_listener, database_url)
        assert ended >= 1

        await _until(lambda: listener.current() is None)
        await _until(lambda: listener.current() is not None, seconds=10)
        assert listener.current() != before
    finally:
        await listener.stop()


def _terminate_listener(url: str) -> int:
    engine = create_sync_engine(url)
    try:
        with engine.connect() as connection:
            return len(
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": f"{LISTENER_NAME} {os.getpid()}"},
                ).all()
            )
    finally:
        engine.dispose()


class _ProbeGoesElsewhere(ChangeListener):
    """A listener whose probe notices go to another channel, as with a pooler
    in transaction mode, where NOTIFY can run on another server connection
    than LISTEN. No such pooler runs here, so this subclass takes its place."""

    async def _send_probe(self, connection, payload: str) -> None:
        await connection.execute("SELECT pg_notify('elsewhere', %s)", (payload,))


async def test_listener_missing_its_probe_does_not_cache(database_url: str):
    template = listener_for(make_url(database_url))
    assert template is not None
    listener = _ProbeGoesElsewhere(template._conninfo, probe_seconds=0.2)
    listener.start()
    try:
        await asyncio.sleep(1.5)

        assert listener.current() is None
    finally:
        await listener.stop()


def test_other_databases_have_no_listener():
    assert listener_for(make_url("sqlite:///fieldguard.db")) is None

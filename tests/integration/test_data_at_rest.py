"""Personal data is sealed in the database, on SQLite and PostgreSQL alike."""

import base64

import httpx
from sqlalchemy import text

from schema.database import create_sync_engine
from tests.support import TEST_INDEX_KEY, RunningService, unique_name


def _raw_dump(database_url: str) -> str:
    engine = create_sync_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = []
            for table in ("users", "audit_events", "sessions"):
                # The table names are the constants above, not input.
                query = text(f"SELECT * FROM {table}")  # noqa: S608
                rows += [repr(tuple(row)) for row in connection.execute(query)]
    finally:
        engine.dispose()
    return "\n".join(rows)


def test_raw_tables_hold_no_personal_data(service: RunningService, tokens):
    email = f"{unique_name('secret')}@example.org"
    name = "Ottilie Quarrington"
    _, username, password = service.add_user(["viewer"], email=email, display_name=name)
    service.login(username)
    agent_marker = "fieldguard-test-agent/" + unique_name("ua")
    service.post(
        {
            "query": (
                'mutation { login(username: "nobody-here", password: "x-pass-123") '
                "{ tokenType } }"
            )
        }
    )

    httpx.post(
        service.url,
        json={
            "query": (
                'mutation { login(username: "nobody-here", password: "x-pass-12") '
                "{ tokenType } }"
            )
        },
        headers={"User-Agent": agent_marker},
        timeout=30,
    )

    dump = _raw_dump(service.database_url)

    assert username in dump  # the dump is real: usernames are stored in clear
    assert email not in dump
    assert email.lower() not in dump
    assert name not in dump
    assert "127.0.0.1" not in dump
    assert agent_marker not in dump
    assert password not in dump
    assert base64.b64encode(TEST_INDEX_KEY).decode() not in dump


def test_sealed_values_name_their_key(service: RunningService):
    service.add_user([], email=f"{unique_name('kid')}@example.org")
    engine = create_sync_engine(service.database_url)
    try:
        with engine.connect() as connection:
            sealed = connection.execute(
                text(
                    "SELECT email_sealed, email_index FROM users WHERE "
                    "email_sealed IS NOT NULL"
                )
            ).all()
    finally:
        engine.dispose()
    assert sealed
    for value, index in sealed:
        assert value.startswith("test1:")
        assert len(index) == 64

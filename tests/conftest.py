"""Session fixtures: one trained model, and one running service per database.

The integration suite runs once on SQLite and, when
`FIELDGUARD_TEST_DATABASE_URL` names a PostgreSQL database, once more on it.
Each PostgreSQL run works in a schema of its own, dropped at the end.
"""

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from ml.registry import LoadedModel, load_latest
from ml.train import MODEL_NAME, train_penguins
from schema.database import create_sync_engine
from tests.support import (
    RunningService,
    find_credentials_in_log,
    run_cli,
    service_env,
    start_server,
    stop_server,
    strong_password,
)

POSTGRES_URL = os.environ.get("FIELDGUARD_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("FIELDGUARD_TEST_REDIS_URL", "")
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])
PERSONA_ROLES = {
    "analyst": ["analyst"],
    "viewer": ["viewer"],
    "auditor": ["auditor"],
    "nobody": [],
}


def pytest_report_header() -> list[str]:
    databases = (
        "fieldguard databases: SQLite and PostgreSQL"
        if POSTGRES_URL
        else "fieldguard databases: SQLite only "
        "(set FIELDGUARD_TEST_DATABASE_URL to add PostgreSQL)"
    )
    counters = (
        "fieldguard shared counters: memory and Redis"
        if REDIS_URL
        else "fieldguard shared counters: memory only "
        "(set FIELDGUARD_TEST_REDIS_URL to add Redis)"
    )
    return [databases, counters]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("models")
    train_penguins(directory, iterations=200)
    return directory


@pytest.fixture(scope="session")
def loaded_model(model_dir: Path) -> LoadedModel:
    return load_latest(model_dir, MODEL_NAME)


def _postgres_schema_url(base_url: str, schema: str) -> str:
    separator = "&" if "?" in base_url else "?"
    return f"{base_url}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'fieldguard.db'}"
        return
    schema = f"fieldguard_test_{secrets.token_hex(4)}"
    engine = create_sync_engine(POSTGRES_URL)
    with engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield _postgres_schema_url(POSTGRES_URL, schema)
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


@pytest.fixture(scope="session")
def service(
    database_url: str, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    """A real `fieldguard serve` on a loopback port, with persona users."""
    data_dir = tmp_path_factory.mktemp("data")
    admin_password = strong_password()
    clock_file = data_dir / "clock-offset"
    clock_file.write_text("0", encoding="ascii")
    env = service_env(
        database_url=database_url,
        model_dir=model_dir,
        data_dir=data_dir,
        FIELDGUARD_ADMIN_PASSWORD=admin_password,
        FIELDGUARD_CLOCK_OFFSET_FILE=str(clock_file),
        # The whole suite signs in from 127.0.0.1, failures included; the
        # throttle tests run their own servers with low limits.
        FIELDGUARD_LOGIN_IP_FAILURES_TO_LOCK="100000",
        FIELDGUARD_LOGIN_FAILURES_BEFORE_DELAY="100",
        FIELDGUARD_LOGIN_FAILURES_TO_LOCK="1000",
    )
    initialized = run_cli(env, "init")
    assert initialized.returncode == 0, initialized.stderr

    log_path = data_dir / "server.log"
    process, url = start_server(env, log_path)
    running = RunningService(
        url=url,
        env=env,
        database_url=database_url,
        log_path=log_path,
        process=process,
        passwords={"admin": admin_password},
        clock_file=clock_file,
    )
    running.remember(admin_password)
    for username, roles in PERSONA_ROLES.items():
        running.create_user(username, roles)
    try:
        yield running
    finally:
        stop_server(process)
    # Everything the integration suite logged, checked once at the end.
    leaked = find_credentials_in_log(running)
    assert leaked == [], f"credentials found in the server log: {leaked}"


@pytest.fixture(scope="session")
def tokens(service: RunningService) -> dict[str, str]:
    """An access token for each persona, by username."""
    return {name: service.login(name) for name in ["admin", *PERSONA_ROLES]}

"""The `fieldguard` command, run as a subprocess like an operator would."""

import re
from pathlib import Path

import pytest
from sqlalchemy import inspect

from schema.database import create_sync_engine, downgrade, migrate, migration_state
from tests.support import run_cli, service_env, strong_password


@pytest.fixture
def cli_env(tmp_path: Path, model_dir: Path) -> dict[str, str]:
    return service_env(
        database_url=f"sqlite:///{tmp_path / 'cli.db'}",
        model_dir=model_dir,
        data_dir=tmp_path / "data",
    )


def test_init_prints_generated_admin_password_once(cli_env):
    first = run_cli(cli_env, "init")
    second = run_cli(cli_env, "init")

    assert first.returncode == 0, first.stderr
    match = re.search(r"generated password:\s+(\S+)", first.stdout)
    assert match is not None, first.stdout
    assert len(match.group(1)) >= 20
    assert second.returncode == 0, second.stderr
    assert match.group(1) not in second.stdout + second.stderr
    assert "exists already" in second.stdout


def test_init_rejects_short_admin_password(cli_env):
    env = {**cli_env, "FIELDGUARD_ADMIN_PASSWORD": "short"}
    result = run_cli(env, "init")
    assert result.returncode == 1
    assert "FIELDGUARD_ADMIN_PASSWORD must be at least 12 characters" in result.stderr
    assert "short" not in result.stderr.replace("FIELDGUARD_ADMIN_PASSWORD", "")


def test_create_user_reads_password_from_stdin(cli_env):
    assert run_cli(cli_env, "init").returncode == 0
    password = strong_password()

    created = run_cli(
        cli_env, "create-user", "Ana", "--role", "analyst", stdin=password + "\n"
    )
    duplicate = run_cli(
        cli_env, "create-user", "ana", "--role", "viewer", stdin=password + "\n"
    )
    unknown_role = run_cli(
        cli_env, "create-user", "bob", "--role", "pilot", stdin=password + "\n"
    )

    assert created.returncode == 0, created.stderr
    assert "'Ana'" in created.stdout
    assert "analyst" in created.stdout
    assert password not in created.stdout + created.stderr
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr
    assert unknown_role.returncode == 1
    assert "unknown role(s): pilot" in unknown_role.stderr


def test_create_user_before_init_says_what_to_run(cli_env):
    result = run_cli(cli_env, "create-user", "ana", "--role", "viewer", stdin="x\n")
    assert result.returncode == 1
    assert "fieldguard init" in result.stderr


def test_serve_refuses_to_start_without_model(cli_env, tmp_path):
    env = {**cli_env, "FIELDGUARD_MODEL_DIR": str(tmp_path / "empty")}
    assert run_cli(env, "init").returncode == 0
    result = run_cli(env, "serve", "--port", "1")
    assert result.returncode == 1
    assert "No model found under" in result.stderr
    assert "fieldguard train" in result.stderr


def test_production_requires_secret(cli_env):
    env = {**cli_env, "FIELDGUARD_ENV": "production"}
    env.pop("FIELDGUARD_JWT_SECRET")
    result = run_cli(env, "serve", "--port", "1")
    assert result.returncode == 2
    assert "FIELDGUARD_JWT_SECRET is required" in result.stderr


def test_train_writes_a_new_version(tmp_path, cli_env):
    env = {**cli_env, "FIELDGUARD_MODEL_DIR": str(tmp_path / "models")}
    first = run_cli(env, "train", "--iterations", "20")
    skipped = run_cli(env, "train", "--if-missing")
    second = run_cli(env, "train", "--iterations", "20")

    assert first.returncode == 0, first.stderr
    assert "version 1" in first.stdout
    assert "not training" in skipped.stdout
    assert "version 2" in second.stdout
    assert (tmp_path / "models" / "penguins" / "2" / "metadata.json").exists()


def test_migrations_go_up_and_down(tmp_path):
    url = f"sqlite:///{tmp_path / 'migrations.db'}"
    migrate(url)
    current, head = migration_state(url)
    assert current == head

    downgrade(url)
    engine = create_sync_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    finally:
        engine.dispose()
    migrate(url)
    assert migration_state(url)[0] == head


def test_database_file_is_private(cli_env, tmp_path):
    assert run_cli(cli_env, "init").returncode == 0
    mode = (tmp_path / "cli.db").stat().st_mode
    assert mode & 0o077 == 0


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("FIELDGUARD_JWT_SECRET", "short", "FIELDGUARD_JWT_SECRET"),
        ("FIELDGUARD_LOG_LEVEL", "LOUD", "FIELDGUARD_LOG_LEVEL"),
        (
            "FIELDGUARD_ACCESS_TOKEN_TTL_SECONDS",
            "60",
            "FIELDGUARD_ACCESS_TOKEN_TTL_SECONDS",
        ),
    ],
)
def test_invalid_setting_names_the_variable(cli_env, variable, value, message):
    result = run_cli({**cli_env, variable: value}, "export-schema")
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_database_is_explained(cli_env, tmp_path):
    env = {
        **cli_env,
        "FIELDGUARD_DATABASE_URL": f"sqlite:///{tmp_path}/missing/dir/x.db",
    }
    result = run_cli(env, "create-user", "zed", "--role", "viewer", stdin="x\n")
    assert result.returncode == 1
    assert "cannot use the database" in result.stderr
    assert "Traceback" not in result.stderr


def test_permissions_document_is_current():
    from graph.api import build_schema
    from graph.matrix import render_document

    path = Path(__file__).resolve().parent.parent / "docs" / "permissions.md"
    assert path.read_text(encoding="utf-8") == render_document(
        build_schema().as_str()
    ), (
        "docs/permissions.md is stale; run "
        "`fieldguard permissions-matrix --document > docs/permissions.md`"
    )


def test_rotate_data_key_reseals_everything(tmp_path, model_dir):
    """Development keys: rotation adds a key and moves every value to it."""
    import asyncio
    import json
    from datetime import UTC, datetime

    from graph.services import build_cipher
    from graph.settings import Settings
    from schema.audit import Actor, record_event
    from schema.database import create_service_engine, create_session_factory
    from schema.passwords import PasswordHasher, PasswordPolicy, ThreadedPasswordHasher
    from schema.sessions import SessionPolicy, start_session
    from schema.users import (
        AccountTools,
        create_user,
        get_user_by_username,
        read_email,
    )

    data_dir = tmp_path / "data"
    env = service_env(
        database_url=f"sqlite:///{tmp_path / 'rotate.db'}",
        model_dir=model_dir,
        data_dir=data_dir,
    )
    env.pop("FIELDGUARD_DATA_KEYS")
    env.pop("FIELDGUARD_DATA_INDEX_KEY")
    assert run_cli(env, "init").returncode == 0
    settings = Settings(data_dir=data_dir, database_url=env["FIELDGUARD_DATABASE_URL"])
    old_key = json.loads((data_dir / "data_keys.json").read_text())["active"]

    async def seed() -> None:
        engine = create_service_engine(settings.resolved_database_url)
        tools = AccountTools(
            cipher=build_cipher(settings),
            hasher=ThreadedPasswordHasher(
                PasswordHasher(memory_cost_kib=64, time_cost=1), max_concurrent=1
            ),
            policy=PasswordPolicy(),
        )
        async with create_session_factory(engine)() as session, session.begin():
            for number in range(7):
                await create_user(
                    session,
                    tools,
                    username=f"rot{number}",
                    password=strong_password(),
                    role_names=[],
                    email=f"rot{number}@example.org",
                )
                await record_event(
                    session,
                    tools.cipher,
                    actor=Actor(client_ip="10.1.2.3", user_agent="ua"),
                    action="test",
                    outcome="success",
                )
            user = await get_user_by_username(session, "rot0")
            await start_session(
                session,
                tools.cipher,
                user_id=user.id,
                client_ip="10.9.9.9",
                user_agent="agent",
                now=datetime.now(UTC),
                policy=SessionPolicy(),
            )
        await engine.dispose()

    asyncio.run(seed())
    result = run_cli(env, "rotate-data-key", "--batch-size", "3")
    assert result.returncode == 0, result.stderr
    new_key = json.loads((data_dir / "data_keys.json").read_text())["active"]
    assert new_key != old_key
    assert "Resealed" in result.stdout

    engine = create_sync_engine(settings.resolved_database_url)
    with engine.connect() as connection:
        from sqlalchemy import text

        sealed = [
            value
            for row in connection.execute(
                text(
                    "SELECT email_sealed FROM users WHERE email_sealed IS NOT NULL "
                    "UNION ALL SELECT client_ip_sealed FROM audit_events "
                    "UNION ALL SELECT client_ip_sealed FROM sessions"
                )
            )
            for value in row
        ]
    engine.dispose()
    assert len(sealed) == 15
    assert all(value.startswith(f"{new_key}:") for value in sealed)

    async def read_back() -> list[str | None]:
        engine = create_service_engine(settings.resolved_database_url)
        cipher = build_cipher(settings)
        from sqlalchemy import select

        from schema.tables import User

        async with create_session_factory(engine)() as session:
            users = (
                await session.scalars(select(User).where(User.username.like("rot%")))
            ).all()
            emails = [read_email(cipher, user) for user in users]
        await engine.dispose()
        return emails

    assert sorted(asyncio.run(read_back())) == [f"rot{n}@example.org" for n in range(7)]


def test_production_requires_data_keys(cli_env):
    env = {**cli_env, "FIELDGUARD_ENV": "production"}
    env.pop("FIELDGUARD_DATA_KEYS")
    result = run_cli(env, "serve", "--port", "1")
    assert result.returncode == 2
    assert "FIELDGUARD_DATA_KEYS" in result.stderr


def test_production_refuses_bootstrap_admin_password(cli_env):
    password = strong_password()
    env = {**cli_env, "FIELDGUARD_ADMIN_PASSWORD": password}
    assert run_cli(env, "init").returncode == 0

    refused = run_cli({**env, "FIELDGUARD_ENV": "production"}, "serve", "--port", "1")
    changed = run_cli(env, "set-password", "admin", stdin=strong_password() + "\n")
    weak = run_cli(env, "set-password", "admin", stdin="admin-admin-admin\n")

    assert refused.returncode == 1
    assert "fieldguard set-password admin" in refused.stderr
    assert password not in refused.stderr
    assert changed.returncode == 0, changed.stderr
    assert weak.returncode == 1
    assert "The password" in weak.stderr


def test_production_refuses_development_secret(cli_env, tmp_path):
    data_dir = tmp_path / "data"
    development = {**cli_env}
    development.pop("FIELDGUARD_JWT_SECRET")
    assert run_cli(development, "init").returncode == 0
    secret = (data_dir / "jwt_secret").read_text().strip()

    result = run_cli(
        {**cli_env, "FIELDGUARD_ENV": "production", "FIELDGUARD_JWT_SECRET": secret},
        "serve",
        "--port",
        "1",
    )
    assert result.returncode == 1
    assert "development secret" in result.stderr


def test_autoincrement_migration_keeps_rows(tmp_path):
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path / 'upgrade.db'}"
    migrate(url, "0003")
    engine = create_sync_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO roles (id, name, description, builtin) "
                "VALUES (1, 'r', '', 0)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO users (id, username, username_key, password_hash, "
                "is_active, created_at, updated_at, must_change_password, "
                "auth_version, failed_logins, is_service_account) VALUES "
                "(1, 'a', 'a', 'x', 1, '2026-01-01', '2026-01-01', 0, 1, 0, 0)"
            )
        )
        connection.execute(text("INSERT INTO user_roles VALUES (1, 1)"))

    migrate(url)
    with engine.begin() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM user_roles")).scalar() == 1
        connection.execute(text("DELETE FROM user_roles"))
        connection.execute(text("DELETE FROM users WHERE id = 1"))
        connection.execute(
            text(
                "INSERT INTO users (username, username_key, password_hash, "
                "is_active, created_at, updated_at, must_change_password, "
                "auth_version, failed_logins, is_service_account) VALUES "
                "('b', 'b', 'x', 1, '2026-01-01', '2026-01-01', 0, 1, 0, 0)"
            )
        )
        new_id = connection.execute(
            text("SELECT id FROM users WHERE username = 'b'")
        ).scalar()
    engine.dispose()
    assert new_id == 2


def test_login_upgrades_weaker_hashes(cli_env, tmp_path):
    """A hash made under a lower argon2 cost is replaced at the next sign-in."""
    from sqlalchemy import text

    from tests.support import start_server, stop_server

    password = strong_password()
    assert (
        run_cli({**cli_env, "FIELDGUARD_ADMIN_PASSWORD": password}, "init").returncode
        == 0
    )
    engine = create_sync_engine(cli_env["FIELDGUARD_DATABASE_URL"])
    query = text("SELECT password_hash FROM users WHERE username = 'admin'")
    with engine.connect() as connection:
        before = connection.execute(query).scalar_one()

    stronger = {**cli_env, "FIELDGUARD_ARGON2_MEMORY_COST_KIB": "128"}
    process, url = start_server(stronger, tmp_path / "upgrade.log")
    try:
        import httpx

        response = httpx.post(
            url,
            json={
                "query": 'mutation($p: String!) { login(username: "admin", '
                "password: $p) { tokenType } }",
                "variables": {"p": password},
            },
            timeout=30,
        )
        assert response.json()["data"]["login"]["tokenType"] == "Bearer"
    finally:
        stop_server(process)
    with engine.connect() as connection:
        after = connection.execute(query).scalar_one()
    engine.dispose()

    assert "m=64," in before
    assert "m=128," in after

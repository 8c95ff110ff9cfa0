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
    assert "No model 'penguins' found" in result.stderr
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

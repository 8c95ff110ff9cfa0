"""Helpers shared by the tests: a running service, users and GraphQL calls."""

import asyncio
import base64
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXTransport

from schema.crypto import DataCipher, DataKeys, format_key_list, new_key
from schema.database import create_service_engine, create_session_factory
from schema.passwords import PasswordHasher, PasswordPolicy, ThreadedPasswordHasher
from schema.users import AccountTools, create_user

# Argon2 parameters low enough for hundreds of logins in a test run.
TEST_ARGON2_ENV = {
    "FIELDGUARD_ARGON2_MEMORY_COST_KIB": "64",
    "FIELDGUARD_ARGON2_TIME_COST": "1",
}
TEST_JWT_SECRET = "test-secret-" + secrets.token_hex(32)
TEST_DATA_KEY_ID = "test1"
TEST_DATA_KEY = new_key()
TEST_INDEX_KEY = secrets.token_bytes(32)
TEST_DATA_KEYS_ENV = {
    "FIELDGUARD_DATA_KEYS": format_key_list({TEST_DATA_KEY_ID: TEST_DATA_KEY}, "test1"),
    "FIELDGUARD_DATA_INDEX_KEY": base64.b64encode(TEST_INDEX_KEY).decode(),
}


def make_test_cipher() -> DataCipher:
    """Return a cipher with the keys the test services use."""
    return DataCipher(
        DataKeys(
            keys={TEST_DATA_KEY_ID: TEST_DATA_KEY},
            active_key_id=TEST_DATA_KEY_ID,
            index_key=TEST_INDEX_KEY,
        )
    )


SERVER_START_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def strong_password() -> str:
    return "pw-" + secrets.token_urlsafe(18)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def fieldguard_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "graph", *args]


@dataclass(frozen=True)
class GraphQLResult:
    data: dict[str, Any] | None
    errors: list[dict[str, Any]]

    def codes(self) -> list[str]:
        return [error.get("extensions", {}).get("code") for error in self.errors]

    def error_at(self, *path: str | int) -> dict[str, Any]:
        matches = [e for e in self.errors if tuple(e.get("path") or ()) == path]
        assert matches, f"no error at {path}; errors: {self.errors}"
        return matches[0]


@dataclass
class RunningService:
    """A fieldguard server started for the tests, with its settings."""

    url: str
    env: dict[str, str]
    database_url: str
    log_path: Path
    process: subprocess.Popen[bytes]
    passwords: dict[str, str] = field(default_factory=dict)
    clock_file: Path | None = None
    # Every credential this suite saw, to prove none reaches the server log.
    credentials: set[str] = field(default_factory=set)

    def remember(self, *values: str | None) -> None:
        self.credentials.update(value for value in values if value)

    @contextmanager
    def clock_moved(self, seconds: float) -> Iterator[None]:
        """Move the server's clock forward for the block, then back."""
        assert self.clock_file is not None, "this server has no controllable clock"
        self.clock_file.write_text(str(seconds), encoding="ascii")
        try:
            yield
        finally:
            self.clock_file.write_text("0", encoding="ascii")

    def login_pair(self, username: str, password: str | None = None) -> dict[str, Any]:
        """Sign in and return the whole login payload."""
        result = self.execute(
            "mutation($u: String!, $p: String!) { login(username: $u, password: $p) "
            "{ accessToken refreshToken expiresIn passwordChangeRequired } }",
            {"u": username, "p": password or self.passwords[username]},
        )
        assert result.errors == [], result.errors
        payload = result.data["login"]
        self.remember(payload["accessToken"], payload["refreshToken"])
        return payload

    def refresh(self, refresh_token: str) -> GraphQLResult:
        """Call refreshToken; `data` is the payload itself, or None on error."""
        result = self.execute(
            "mutation($t: String!) { refreshToken(token: $t) "
            "{ accessToken refreshToken } }",
            {"t": refresh_token},
        )
        payload = result.data["refreshToken"] if result.data else None
        if payload:
            self.remember(payload["accessToken"], payload["refreshToken"])
        return GraphQLResult(data=payload, errors=result.errors)

    def client(self, token: str | None = None) -> Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = HTTPXTransport(url=self.url, headers=headers, timeout=30)
        return Client(transport=transport, fetch_schema_from_transport=False)

    def execute(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
    ) -> GraphQLResult:
        """Run one operation through the gql client and keep data and errors."""
        request = GraphQLRequest(query, variable_values=variables)
        try:
            data = self.client(token).execute(request)
        except TransportQueryError as error:
            return GraphQLResult(data=error.data, errors=list(error.errors or []))
        return GraphQLResult(data=data, errors=[])

    def post(self, body: Any, *, token: str | None = None) -> httpx.Response:
        """Send a raw JSON body, for requests the gql client refuses to build."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(self.url, json=body, headers=headers, timeout=30)

    def login(self, username: str, password: str | None = None) -> str:
        result = self.execute(
            "mutation($u: String!, $p: String!) {"
            " login(username: $u, password: $p) { accessToken } }",
            {"u": username, "p": password or self.passwords[username]},
        )
        assert result.errors == [], result.errors
        assert result.data is not None
        token = result.data["login"]["accessToken"]
        self.remember(token)
        return token

    def create_user(
        self, username: str, roles: list[str], password: str | None = None
    ) -> str:
        """Create a user straight in the database and return the password."""
        password = password or strong_password()
        asyncio.run(_create_user(self.database_url, username, password, roles))
        self.passwords[username] = password
        self.remember(password)
        return password

    def add_user(
        self,
        roles: list[str],
        *,
        prefix: str = "user",
        email: str | None = None,
        display_name: str | None = None,
    ) -> tuple[str, str, str]:
        """Create a user through the admin's createUser mutation.

        Returns:
            The new user's id, username and password.
        """
        username = unique_name(prefix)
        password = strong_password()
        result = self.execute(
            "mutation($input: CreateUserInput!) { createUser(input: $input) { id } }",
            {
                "input": {
                    "username": username,
                    "password": password,
                    "roles": roles,
                    "email": email,
                    "displayName": display_name,
                }
            },
            token=self.login("admin"),
        )
        assert result.errors == [], result.errors
        self.passwords[username] = password
        self.remember(password)
        return result.data["createUser"]["id"], username, password

    def is_alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


async def _create_user(
    database_url: str, username: str, password: str, roles: list[str]
) -> None:
    engine = create_service_engine(database_url)
    tools = AccountTools(
        cipher=make_test_cipher(),
        hasher=ThreadedPasswordHasher(
            PasswordHasher(memory_cost_kib=64, time_cost=1), max_concurrent=1
        ),
        policy=PasswordPolicy(),
    )
    try:
        async with create_session_factory(engine)() as session, session.begin():
            await create_user(
                session, tools, username=username, password=password, role_names=roles
            )
    finally:
        await engine.dispose()


def service_env(
    *, database_url: str, model_dir: Path, data_dir: Path, **extra: str
) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("FIELDGUARD_")
    }
    env.update(TEST_ARGON2_ENV)
    env.update(TEST_DATA_KEYS_ENV)
    env.update(
        {
            "FIELDGUARD_DATABASE_URL": database_url,
            "FIELDGUARD_MODEL_DIR": str(model_dir),
            "FIELDGUARD_DATA_DIR": str(data_dir),
            "FIELDGUARD_JWT_SECRET": TEST_JWT_SECRET,
            "FIELDGUARD_LOG_LEVEL": "INFO",
        }
    )
    env.update(extra)
    return env


def run_cli(
    env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        fieldguard_command(*args),
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_server(
    env: dict[str, str], log_path: Path, *extra_args: str
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `fieldguard serve` on a free loopback port and wait until it responds."""
    port = free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            fieldguard_command(
                "serve", "--host", "127.0.0.1", "--port", str(port), *extra_args
            ),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/graphql"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"fieldguard serve exited with {process.returncode}:\n"
                + log_path.read_text(errors="replace")
            )
        try:
            httpx.post(url, json={"query": "{ __typename }"}, timeout=2)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        return process, url
    process.kill()
    raise RuntimeError("fieldguard serve did not answer within the start timeout")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


def find_credentials_in_log(service: RunningService) -> list[str]:
    """Return which remembered credentials, and configured secrets, a log holds."""
    log = service.log_text()
    secrets_in_env = [
        value
        for key, value in service.env.items()
        if key in {"FIELDGUARD_JWT_SECRET", "FIELDGUARD_DATA_INDEX_KEY"}
    ]
    secrets_in_env += [
        part.split(":", 1)[1]
        for part in service.env.get("FIELDGUARD_DATA_KEYS", "").split(",")
        if ":" in part
    ]
    found = [value[:12] + "..." for value in service.credentials if value in log]
    found += [
        "a configured secret" for value in secrets_in_env if value and value in log
    ]
    return found


def start_service(
    env: dict[str, str], log_path: Path, admin_password: str, *extra_args: str
) -> RunningService:
    """Start a server with `start_server` and describe it for the tests."""
    process, url = start_server(env, log_path, *extra_args)
    return RunningService(
        url=url,
        env=env,
        database_url=env["FIELDGUARD_DATABASE_URL"],
        log_path=log_path,
        process=process,
        passwords={"admin": admin_password},
    )

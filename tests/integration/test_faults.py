"""Database and Redis outages under load, on servers this test starts itself.

A PostgreSQL cluster is created with initdb in a temporary folder on a
spare loopback port, and a Redis server on another; the machine's shared
servers are left alone. Each is stopped and started again while a client
keeps sending requests.
"""

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import (
    RunningService,
    free_port,
    run_cli,
    service_env,
    start_server,
    stop_server,
    strong_password,
)

POSTGRES_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
RUN_AS_POSTGRES = ["runuser", "-u", "postgres", "--"]

pytestmark = pytest.mark.skipif(
    not POSTGRES_BIN
    or shutil.which("redis-server") is None
    or shutil.which("runuser") is None,
    reason="needs PostgreSQL's server binaries, redis-server and runuser",
)


class OwnPostgres:
    """A throwaway PostgreSQL cluster owned by the postgres system user."""

    def __init__(self) -> None:
        self.bin = POSTGRES_BIN[-1]
        # Outside pytest's folders, which the postgres user cannot enter.
        self.folder = Path(tempfile.mkdtemp(prefix="fieldguard-pg-"))
        shutil.chown(self.folder, "postgres")
        self.data = self.folder / "data"
        self.port = free_port()
        subprocess.run(
            [
                *RUN_AS_POSTGRES,
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        subprocess.run(
            [
                *RUN_AS_POSTGRES,
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-w",
                "-o",
                f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1",
                "-l",
                str(self.data / "server.log"),
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def stop(self) -> None:
        subprocess.run(
            [
                *RUN_AS_POSTGRES,
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-w",
                "-m",
                "fast",
                "stop",
            ],
            check=False,
            capture_output=True,
            timeout=60,
        )


def _remove_folder(postgres: "OwnPostgres") -> None:
    shutil.rmtree(postgres.folder, ignore_errors=True)


class OwnRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"],
                capture_output=True,
                text=True,
            )
            if probe.stdout.strip() == "PONG":
                return
            time.sleep(0.1)
        raise RuntimeError("the test's Redis did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None


@pytest.fixture(scope="module")
def outage_service(
    model_dir, tmp_path_factory
) -> Iterator[tuple[RunningService, OwnPostgres, OwnRedis]]:
    folder = tmp_path_factory.mktemp("faults")
    postgres = OwnPostgres()
    postgres.start()
    redis = OwnRedis()
    redis.start()
    admin_password = strong_password()
    env = service_env(
        database_url=postgres.url,
        model_dir=model_dir,
        data_dir=folder / "data",
        FIELDGUARD_REDIS_URL=redis.url,
        FIELDGUARD_THROTTLE_FAILURE_MODE="closed",
    )
    assert (
        run_cli({**env, "FIELDGUARD_ADMIN_PASSWORD": admin_password}, "init").returncode
        == 0
    )
    process, url = start_server(env, folder / "server.log")
    service = RunningService(
        url=url,
        env=env,
        database_url=postgres.url,
        log_path=folder / "server.log",
        process=process,
        passwords={"admin": admin_password},
    )
    try:
        yield service, postgres, redis
    finally:
        stop_server(process)
        redis.stop()
        postgres.stop()
        _remove_folder(postgres)


class Load:
    """Sends predictions from a thread, bounded in count and time, and keeps codes."""

    def __init__(self, service: RunningService, token: str) -> None:
        self.service = service
        self.token = token
        self.codes: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 60
        for _ in range(2000):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            try:
                response = httpx.post(
                    self.service.url,
                    json={
                        "query": '{ predict(input: {penguins: {island: "Dream"}}) '
                        "{ label } }"
                    },
                    headers={"Authorization": f"Bearer {self.token}"},
                    timeout=10,
                )
                body = response.json()
                errors = body.get("errors") or []
                self.codes.append(errors[0]["extensions"]["code"] if errors else "OK")
            except Exception as error:  # noqa: BLE001 - recorded for the assert
                self.failures.append(repr(error))
            time.sleep(0.02)

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _ready(service: RunningService) -> httpx.Response:
    return httpx.get(service.url.replace("/graphql", "/readyz"), timeout=10)


def test_database_outage_fails_fast_and_recovers(outage_service):
    service, postgres, _ = outage_service
    created = [service.add_user(["viewer"]) for _ in range(3)]
    token = service.login("admin")
    audit_query = "{ auditEvents(limit: 1) { totalCount } }"
    events_before = service.execute(audit_query, token=token).data["auditEvents"][
        "totalCount"
    ]

    with Load(service, token) as load:
        time.sleep(1)
        postgres.stop()
        time.sleep(2)
        started = time.monotonic()
        during = service.execute("{ me { username } }", token=token)
        elapsed = time.monotonic() - started
        ready_during = _ready(service)
        postgres.start()
        time.sleep(2)

    after = service.execute("{ me { username } }", token=token)
    # Failing fast means a response well before the 30-second request timeout
    # that a hanging connection would run into.
    assert elapsed < 5
    assert during.codes() == ["SERVICE_UNAVAILABLE"]
    assert ready_during.status_code == 503
    assert ready_during.json()["checks"]["database"].startswith("failed")
    assert after.errors == []
    assert _ready(service).status_code == 200
    assert load.failures == []
    assert set(load.codes) <= {"OK", "SERVICE_UNAVAILABLE"}
    assert "OK" in load.codes
    assert "SERVICE_UNAVAILABLE" in load.codes
    assert "Traceback" not in "".join(load.failures)
    # Nothing written before the outage was lost.
    for _, username, password in created:
        assert service.login(username, password)
    events_after = service.execute(audit_query, token=token).data["auditEvents"][
        "totalCount"
    ]
    assert events_after >= events_before + len(created)


def test_redis_outage_refuses_sign_in_then_recovers(outage_service):
    service, _, redis = outage_service
    token = service.login("admin")
    with Load(service, token) as load:
        time.sleep(1)
        redis.stop()
        try:
            time.sleep(1)
            refused = service.execute(
                'mutation($p: String!) { login(username: "admin", password: $p) '
                "{ tokenType } }",
                {"p": service.passwords["admin"]},
            )
            ready = _ready(service)
        finally:
            redis.start()
        time.sleep(1)
    recovered = service.login("admin")

    assert refused.codes() == ["SERVICE_UNAVAILABLE"]
    assert ready.status_code == 503
    assert recovered
    assert _ready(service).status_code == 200
    # Predictions count rows in Redis too: refused safely while it was down.
    assert load.failures == []
    assert set(load.codes) <= {"OK", "SERVICE_UNAVAILABLE"}
    assert "OK" in load.codes

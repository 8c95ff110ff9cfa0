"""Login throttling and locks, in memory and in Redis, and two processes
sharing one database and one Redis.

These tests run servers of their own with low limits: 4 failures lock an
account, and in the IP test 12 failures lock the client IP.
"""

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import (
    RunningService,
    run_cli,
    service_env,
    start_service,
    stop_server,
    strong_password,
)

REDIS_URL = os.environ.get("FIELDGUARD_TEST_REDIS_URL", "")
STORES = ["memory"] + (["redis"] if REDIS_URL else [])
LOGIN = (
    "mutation($u: String!, $p: String!) "
    "{ login(username: $u, password: $p) { accessToken } }"
)
LOW_LIMITS = {
    "FIELDGUARD_LOGIN_FAILURES_BEFORE_DELAY": "2",
    "FIELDGUARD_LOGIN_FAILURES_TO_LOCK": "4",
    "FIELDGUARD_LOGIN_IP_FAILURES_TO_LOCK": "1000",
}


def _environment(
    tmp_path_factory: pytest.TempPathFactory,
    model_dir: Path,
    store: str,
    **limits: str,
) -> tuple[dict[str, str], str]:
    data_dir = tmp_path_factory.mktemp(f"throttle-{store}")
    admin_password = strong_password()
    extra = {**LOW_LIMITS, **limits}
    if store == "redis":
        extra["FIELDGUARD_REDIS_URL"] = REDIS_URL
        # A prefix of its own keeps runs from counting each other's failures.
        extra["FIELDGUARD_REDIS_KEY_PREFIX"] = f"fieldguard-test-{secrets.token_hex(4)}"
    env = service_env(
        database_url=f"sqlite:///{data_dir / 'throttle.db'}",
        model_dir=model_dir,
        data_dir=data_dir,
        **extra,
    )
    initialized = run_cli({**env, "FIELDGUARD_ADMIN_PASSWORD": admin_password}, "init")
    assert initialized.returncode == 0, initialized.stderr
    return env, admin_password


@pytest.fixture(scope="module", params=STORES)
def throttled(request, model_dir, tmp_path_factory) -> Iterator[RunningService]:
    env, admin_password = _environment(tmp_path_factory, model_dir, request.param)
    service = start_service(
        env, Path(env["FIELDGUARD_DATA_DIR"]) / "server.log", admin_password
    )
    try:
        yield service
    finally:
        stop_server(service.process)


def _fail(service: RunningService, username: str, times: int) -> None:
    for _ in range(times):
        result = service.execute(LOGIN, {"u": username, "p": "not-the-password-1"})
        assert result.codes() == ["UNAUTHENTICATED"]


def test_account_locks_after_failures(throttled: RunningService):
    _, username, password = throttled.add_user(["viewer"])
    _fail(throttled, username, 4)

    locked = throttled.execute(LOGIN, {"u": username, "p": password})

    assert locked.codes() == ["UNAUTHENTICATED"]
    assert locked.errors[0]["message"] == "Invalid username or password."
    assert "reason=account_locked" in throttled.log_text()


def test_admin_lifts_a_lock(throttled: RunningService):
    user_id, username, password = throttled.add_user(["viewer"])
    _fail(throttled, username, 4)
    lifted = throttled.execute(
        "mutation($id: ID!) { unlockUser(id: $id) { id } }",
        {"id": user_id},
        token=throttled.login("admin"),
    )
    assert lifted.errors == []
    assert throttled.login(username, password)


def test_success_resets_the_count(throttled: RunningService):
    _, username, password = throttled.add_user(["viewer"])
    for _ in range(3):
        _fail(throttled, username, 3)
        assert throttled.login(username, password)


def test_aliases_cannot_multiply_attempts(throttled: RunningService):
    _, username, password = throttled.add_user(["viewer"])
    fields = " ".join(
        f'a{i}: login(username: "{username}", password: "wrong-guess-{i}") '
        "{ accessToken }"
        for i in range(20)
    )
    for _ in range(3):
        throttled.post({"query": f"mutation {{ {fields} }}"})
    # Three requests of twenty aliases each counted as three failures.
    assert throttled.login(username, password)


def test_delay_grows_before_the_lock(throttled: RunningService):
    _, username, _ = throttled.add_user(["viewer"])
    _fail(throttled, username, 3)
    log = throttled.log_text()
    assert "reason=wrong_password" in log
    lines = [line for line in log.splitlines() if "reason=wrong_password" in line]
    assert len(lines) >= 3


def test_lock_is_audited(throttled: RunningService):
    user_id, username, password = throttled.add_user(["viewer"])
    _fail(throttled, username, 4)
    throttled.execute(LOGIN, {"u": username, "p": password})
    events = throttled.execute(
        'query($id: String) { auditEvents(filter: {action: "login", targetId: $id}) '
        "{ items { outcome details } } }",
        {"id": user_id},
        token=throttled.login("admin"),
    ).data["auditEvents"]["items"]
    assert events[0] == {"outcome": "locked", "details": {"reason": "account_locked"}}


def test_ip_locks_after_many_accounts_fail(model_dir, tmp_path_factory):
    env, admin_password = _environment(
        tmp_path_factory,
        model_dir,
        STORES[-1],
        FIELDGUARD_LOGIN_IP_FAILURES_TO_LOCK="12",
    )
    service = start_service(
        env, Path(env["FIELDGUARD_DATA_DIR"]) / "server.log", admin_password
    )
    try:
        _, username, password = service.add_user(["viewer"])
        for number in range(12):
            _fail(service, f"nobody-{number}", 1)
        refused = service.execute(LOGIN, {"u": username, "p": password})
        assert refused.codes() == ["UNAUTHENTICATED"]
        assert "reason=ip_locked" in service.log_text()
    finally:
        stop_server(service.process)


@pytest.mark.skipif(not REDIS_URL, reason="needs FIELDGUARD_TEST_REDIS_URL")
def test_two_processes_share_sessions_locks_and_roles(model_dir, tmp_path_factory):
    env, admin_password = _environment(tmp_path_factory, model_dir, "redis")
    data_dir = Path(env["FIELDGUARD_DATA_DIR"])
    first = start_service(env, data_dir / "first.log", admin_password)
    second = start_service(env, data_dir / "second.log", admin_password)
    try:
        user_id, username, password = first.add_user(["analyst"])
        second.passwords[username] = password

        # Logout on one process is honoured by the other.
        pair = first.login_pair(username)
        assert second.execute("{ me { id } }", token=pair["accessToken"]).errors == []
        first.execute("mutation { logout }", token=pair["accessToken"])
        assert second.execute("{ me { id } }", token=pair["accessToken"]).codes() == [
            "UNAUTHENTICATED"
        ]

        # A role change on one process ends the tokens on the other.
        token = second.login(username)
        first.execute(
            'mutation($id: ID!) { setUserRoles(id: $id, roles: ["viewer"]) { id } }',
            {"id": user_id},
            token=first.login("admin"),
        )
        assert second.execute("{ me { id } }", token=token).codes() == [
            "UNAUTHENTICATED"
        ]

        # Failures counted on both processes lock the account on both.
        _fail(first, username, 2)
        _fail(second, username, 2)
        assert first.execute(LOGIN, {"u": username, "p": password}).codes() == [
            "UNAUTHENTICATED"
        ]
        assert second.execute(LOGIN, {"u": username, "p": password}).codes() == [
            "UNAUTHENTICATED"
        ]
    finally:
        stop_server(first.process)
        stop_server(second.process)


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_unreachable_redis(model_dir, tmp_path_factory, mode):
    from tests.support import free_port

    env, admin_password = _environment(tmp_path_factory, model_dir, "memory")
    # A loopback port with nothing listening stands for a stopped Redis.
    env["FIELDGUARD_REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    env["FIELDGUARD_THROTTLE_FAILURE_MODE"] = mode
    service = start_service(
        env, Path(env["FIELDGUARD_DATA_DIR"]) / "server.log", admin_password
    )
    try:
        result = service.execute(LOGIN, {"u": "admin", "p": admin_password})
        ready = httpx.get(service.url.replace("/graphql", "/readyz"), timeout=30)

        assert ready.status_code == 503
        assert ready.json()["checks"]["redis"].startswith("failed")
        if mode == "closed":
            assert result.codes() == ["SERVICE_UNAVAILABLE"]
            assert "refusing sign-in" in service.log_text()
        else:
            assert result.errors == []
            assert "letting sign-in through unthrottled" in service.log_text()
        assert service.is_alive()
    finally:
        stop_server(service.process)


def test_prediction_quota(model_dir, tmp_path_factory):
    env, admin_password = _environment(
        tmp_path_factory, model_dir, STORES[-1], FIELDGUARD_PREDICT_ROWS_PER_MINUTE="10"
    )
    service = start_service(
        env, Path(env["FIELDGUARD_DATA_DIR"]) / "server.log", admin_password
    )
    batch = "query($i: PredictBatchInput!) { predictBatch(input: $i) { labels } }"
    try:
        _, username, _ = service.add_user(["viewer"])
        token = service.login(username)
        first = service.execute(
            batch, {"i": {"penguins": {"island": ["Dream"] * 8}}}, token=token
        )
        over = service.execute(
            batch, {"i": {"penguins": {"island": ["Dream"] * 3}}}, token=token
        )
        fits = service.execute(
            batch, {"i": {"penguins": {"island": ["Dream"] * 2}}}, token=token
        )
        other = service.execute(
            batch,
            {"i": {"penguins": {"island": ["Dream"] * 8}}},
            token=service.login("admin"),
        )

        assert first.errors == []
        assert over.codes() == ["QUOTA_EXCEEDED"]
        assert 0 <= over.errors[0]["extensions"]["retryAfterSeconds"] <= 60
        assert fits.errors == []
        assert other.errors == []  # quotas are per caller
    finally:
        stop_server(service.process)


def test_several_workers_serve_one_port(model_dir, tmp_path_factory):
    env, admin_password = _environment(tmp_path_factory, model_dir, STORES[-1])
    log = Path(env["FIELDGUARD_DATA_DIR"]) / "workers.log"
    service = start_service(env, log, admin_password, "--workers", "2")
    process, url = service.process, service.url
    try:
        pair = service.login_pair("admin")
        for _ in range(20):
            assert (
                service.execute("{ me { username } }", token=pair["accessToken"]).errors
                == []
            )
        service.execute("mutation { logout }", token=pair["accessToken"])
        # Whichever worker responds, the logout holds.
        for _ in range(6):
            codes = service.execute(
                "{ me { username } }", token=pair["accessToken"]
            ).codes()
            assert codes == ["UNAUTHENTICATED"]
        metrics = httpx.get(url.replace("/graphql", "/metrics"), timeout=30).text
        assert "fieldguard_graphql_requests_total" in metrics
        assert log.read_text().count("Started server process") == 2
    finally:
        stop_server(process)

"""Two fieldguard instances behind nginx, sharing PostgreSQL and Redis.

Mixed traffic goes through nginx, which balances requests between the two
instances, for a bounded number of requests. Sessions, revocations,
throttles and quotas must behave as if there were one service.
"""

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from schema.database import create_sync_engine
from tests.support import (
    RunningService,
    free_port,
    run_cli,
    service_env,
    start_server,
    stop_server,
    strong_password,
)

POSTGRES_URL = os.environ.get("FIELDGUARD_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("FIELDGUARD_TEST_REDIS_URL", "")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

pytestmark = pytest.mark.skipif(
    not (POSTGRES_URL and REDIS_URL and Path(NGINX).exists()),
    reason="needs FIELDGUARD_TEST_DATABASE_URL, FIELDGUARD_TEST_REDIS_URL and nginx",
)

NGINX_CONFIG = """
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    upstream fieldguard {{
        server 127.0.0.1:{first};
        server 127.0.0.1:{second};
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://fieldguard;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Request-ID $request_id;
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def replicas(model_dir, tmp_path_factory) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("replicas")
    schema = f"fieldguard_replicas_{secrets.token_hex(4)}"
    engine = create_sync_engine(POSTGRES_URL)
    with engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in POSTGRES_URL else "?"
    database_url = f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    admin_password = strong_password()
    env = service_env(
        database_url=database_url,
        model_dir=model_dir,
        data_dir=folder / "data",
        FIELDGUARD_REDIS_URL=REDIS_URL,
        FIELDGUARD_REDIS_KEY_PREFIX=f"fieldguard-replicas-{secrets.token_hex(4)}",
        FIELDGUARD_TRUSTED_PROXIES="127.0.0.1",
        FIELDGUARD_LOGIN_FAILURES_TO_LOCK="4",
        FIELDGUARD_LOGIN_FAILURES_BEFORE_DELAY="100",
        FIELDGUARD_PREDICT_ROWS_PER_MINUTE="200",
    )
    assert (
        run_cli({**env, "FIELDGUARD_ADMIN_PASSWORD": admin_password}, "init").returncode
        == 0
    )
    first, first_url = start_server(env, folder / "first.log")
    second, second_url = start_server(env, folder / "second.log")

    nginx_folder = Path(tempfile.mkdtemp(prefix="fieldguard-nginx-"))
    port = free_port()
    config = nginx_folder / "nginx.conf"
    config.write_text(
        NGINX_CONFIG.format(
            folder=nginx_folder,
            first=first_url.split(":")[2].split("/")[0],
            second=second_url.split(":")[2].split("/")[0],
            port=port,
        )
    )
    proxy = subprocess.Popen(
        [NGINX, "-c", str(config), "-p", str(nginx_folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/graphql"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url.replace("/graphql", "/healthz"), timeout=2)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    service = RunningService(
        url=url,
        env=env,
        database_url=database_url,
        log_path=folder / "first.log",
        process=first,
        passwords={"admin": admin_password},
    )
    try:
        yield {"service": service, "direct": [first_url, second_url], "logs": folder}
    finally:
        proxy.terminate()
        proxy.wait(timeout=20)
        stop_server(first)
        stop_server(second)
        shutil.rmtree(nginx_folder, ignore_errors=True)
        with engine.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


def test_mixed_traffic_through_nginx(replicas):
    service: RunningService = replicas["service"]
    _, username, password = service.add_user(["analyst"])
    failed = []
    pair = service.login_pair(username, password)
    for number in range(60):
        if number % 20 == 19:
            pair = service.login_pair(username, password)
        result = service.execute(
            '{ predict(input: {penguins: {island: "Biscoe", flipperLengthMm: 220}}) '
            "{ label } }",
            token=pair["accessToken"],
        )
        if result.errors or result.data["predict"]["label"] != "Gentoo":
            failed.append(result.errors)
        me = service.execute("{ me { username } }", token=pair["accessToken"])
        if me.errors:
            failed.append(me.errors)
    assert failed == []

    # Both instances served: each has counted operations of its own.
    for url in replicas["direct"]:
        metrics = httpx.get(url.replace("/graphql", "/metrics"), timeout=30).text
        assert 'fieldguard_graphql_requests_total{code="OK"' in metrics


def test_logout_holds_on_both_instances(replicas):
    service: RunningService = replicas["service"]
    _, username, password = service.add_user(["viewer"])
    pair = service.login_pair(username, password)
    service.execute("mutation { logout }", token=pair["accessToken"])
    for _ in range(6):  # nginx alternates between the instances
        assert service.execute("{ me { id } }", token=pair["accessToken"]).codes() == [
            "UNAUTHENTICATED"
        ]
    for url in replicas["direct"]:
        response = httpx.post(
            url,
            json={"query": "{ me { id } }"},
            headers={"Authorization": f"Bearer {pair['accessToken']}"},
            timeout=30,
        )
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_throttle_and_quota_count_once(replicas):
    service: RunningService = replicas["service"]
    _, username, password = service.add_user(["viewer"])
    for _ in range(4):  # spread over both instances by nginx
        service.execute(
            'mutation($u: String!) { login(username: $u, password: "wrong-pass-123") '
            "{ tokenType } }",
            {"u": username},
        )
    locked = service.execute(
        "mutation($u: String!, $p: String!) { login(username: $u, password: $p) "
        "{ tokenType } }",
        {"u": username, "p": password},
    )
    assert locked.codes() == ["UNAUTHENTICATED"]

    token = service.login("admin")
    batch = "query($i: PredictBatchInput!) { predictBatch(input: $i) { labels } }"
    codes = [
        tuple(
            service.execute(
                batch, {"i": {"penguins": {"island": ["Dream"] * 60}}}, token=token
            ).codes()
        )
        for _ in range(4)
    ]
    # 200 rows a minute across both instances: three batches of 60 fit.
    assert codes[:3] == [(), (), ()]
    assert codes[3] == ("QUOTA_EXCEEDED",)


def test_request_ids_pass_through_nginx(replicas):
    service: RunningService = replicas["service"]
    response = httpx.post(service.url, json={"query": "{ __typename }"}, timeout=30)
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32  # nginx's $request_id, believed from the proxy

    # The access line is written after the response is sent; wait for it.
    def logged() -> bool:
        logs = "".join(
            path.read_text(errors="replace") for path in replicas["logs"].glob("*.log")
        )
        return f"request_id={request_id}" in logs

    deadline = time.monotonic() + 10
    while not logged() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert logged()

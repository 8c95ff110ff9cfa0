"""The attack suite against a live service in production mode.

Each attack gets its error code, the service keeps serving, and nothing is
written. This module runs its own server on SQLite; the general suite covers
both databases.
"""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from schema.database import create_sync_engine
from tests.support import (
    RunningService,
    run_cli,
    service_env,
    start_server,
    stop_server,
    strong_password,
)

METRICS_TOKEN = "scraper-" + "7" * 24
INTROSPECTION_PROBES = {
    "schema": "{ __schema { queryType { name } } }",
    "type": '{ __type(name: "User") { fields { name } } }',
    "aliased": "{ s: __schema { types { name } } }",
    "fragment": "query { ...F } fragment F on Query { __schema { types { name } } }",
    "inline-fragment": '{ ... on Query { __type(name: "Role") { name } } }',
}


@pytest.fixture(scope="module")
def production(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    data_dir = tmp_path_factory.mktemp("production")
    database_url = f"sqlite:///{data_dir / 'production.db'}"
    admin_password = strong_password()
    env = service_env(
        database_url=database_url,
        model_dir=model_dir,
        data_dir=data_dir,
        FIELDGUARD_ENV="production",
        # The tests act as the reverse proxy in front of this server.
        FIELDGUARD_TRUSTED_PROXIES="127.0.0.1",
        FIELDGUARD_MAX_BATCH_OPERATIONS="2",
        FIELDGUARD_CORS_ORIGINS="https://app.example",
        FIELDGUARD_METRICS_TOKEN=METRICS_TOKEN,
    )
    initialized = run_cli({**env, "FIELDGUARD_ADMIN_PASSWORD": admin_password}, "init")
    assert initialized.returncode == 0, initialized.stderr
    process, url = start_server(env, data_dir / "server.log")
    running = RunningService(
        url=url,
        env=env,
        database_url=database_url,
        log_path=data_dir / "server.log",
        process=process,
        passwords={"admin": admin_password},
    )
    running.create_user("viewer", ["viewer"])
    try:
        yield running
    finally:
        stop_server(process)


def _row_counts(service: RunningService) -> dict[str, int]:
    engine = create_sync_engine(service.database_url)
    try:
        with engine.connect() as connection:
            return {
                table: connection.execute(
                    text(f"SELECT COUNT(*) FROM {table}")  # noqa: S608
                ).scalar_one()
                for table in ("users", "roles", "role_permissions", "user_roles")
            }
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def counts_before(production: RunningService) -> dict[str, int]:
    return _row_counts(production)


def _codes(response: httpx.Response) -> list[str]:
    return [e["extensions"]["code"] for e in response.json()["errors"]]


@pytest.mark.parametrize("probe", sorted(INTROSPECTION_PROBES))
@pytest.mark.parametrize(
    ("persona", "code"), [(None, "UNAUTHENTICATED"), ("viewer", "FORBIDDEN")]
)
def test_introspection_is_refused(production: RunningService, probe, persona, code):
    token = production.login(persona) if persona else None
    response = production.post({"query": INTROSPECTION_PROBES[probe]}, token=token)
    assert response.json()["data"] is None
    assert _codes(response) == [code]


def test_admin_may_introspect(production: RunningService):
    response = production.post(
        {"query": INTROSPECTION_PROBES["schema"]}, token=production.login("admin")
    )
    assert response.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


def test_typename_stays_open(production: RunningService):
    assert production.post({"query": "{ __typename }"}).json() == {
        "data": {"__typename": "Query"}
    }


def test_graphiql_is_off(production: RunningService):
    response = httpx.get(production.url, headers={"Accept": "text/html"}, timeout=30)
    assert response.status_code in (400, 404)
    assert "graphiql" not in response.text.lower()


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("{ mee { id } }", id="field"),
        pytest.param("{ me { usernam } }", id="nested-field"),
        pytest.param(
            '{ predict(inptu: {penguins: {island: "Dream"}}) { label } }', id="argument"
        ),
        pytest.param(
            "query($i: PenguinFeature!) { predict(input: $i) { label } }", id="type"
        ),
        pytest.param(
            '{ predict(input: {penguins: {islnd: "Dream"}}) { label } }',
            id="input-field",
        ),
    ],
)
def test_no_suggestions(production: RunningService, query):
    response = production.post({"query": query}, token=production.login("viewer"))
    body = response.json()
    assert body["errors"]
    for error in body["errors"]:
        assert "Did you mean" not in error["message"]


def test_get_queries_are_refused(production: RunningService):
    response = httpx.get(production.url, params={"query": "{ __typename }"}, timeout=30)
    assert response.status_code == 400
    assert _codes(response) == ["BAD_REQUEST"]


def test_small_batches_are_allowed(production: RunningService):
    token = production.login("viewer")
    operation = {"query": "{ me { username } }"}
    headers = {"Authorization": f"Bearer {token}"}

    two = httpx.post(production.url, json=[operation] * 2, headers=headers, timeout=30)
    three = httpx.post(
        production.url, json=[operation] * 3, headers=headers, timeout=30
    )

    assert two.json() == [{"data": {"me": {"username": "viewer"}}}] * 2
    assert three.status_code == 400
    assert _codes(three) == ["BAD_REQUEST"]


def test_batched_logins_are_refused(production: RunningService):
    login = {
        "query": 'mutation { login(username: "admin", password: "guess-number-1") '
        "{ accessToken } }"
    }
    for batch in ([login, login], [{"query": "{ __typename }"}, login]):
        response = httpx.post(production.url, json=batch, timeout=30)
        assert response.status_code == 400
        assert _codes(response) == ["BAD_REQUEST"]
        assert "cannot be batched" in response.json()["errors"][0]["message"]


def test_batched_mutation_must_come_last(production: RunningService):
    token = production.login("viewer")
    headers = {"Authorization": f"Bearer {token}"}
    logout = {"query": "mutation { logout }"}
    me = {"query": "{ me { username } }"}

    rejected = httpx.post(
        production.url, json=[logout, me], headers=headers, timeout=30
    )
    assert rejected.status_code == 400
    assert _codes(rejected) == ["BAD_REQUEST"]
    assert "last operation" in rejected.json()["errors"][0]["message"]
    # Refused as a whole: the session is still open.
    assert production.execute("{ me { username } }", token=token).codes() == []

    accepted = httpx.post(
        production.url, json=[me, logout], headers=headers, timeout=30
    )
    assert accepted.json() == [
        {"data": {"me": {"username": "viewer"}}},
        {"data": {"logout": True}},
    ]
    assert production.execute("{ me { username } }", token=token).codes() == [
        "UNAUTHENTICATED"
    ]


def test_many_login_aliases_are_one_guess_at_most(production: RunningService):
    fields = " ".join(
        f'a{i}: login(username: "admin", password: "guess-{i}-x") {{ tokenType }}'
        for i in range(40)
    )
    response = production.post({"query": f"mutation {{ {fields} }}"})
    assert response.json()["data"] is None
    assert _codes(response) == ["GRAPHQL_VALIDATION_FAILED"]


ATTACKS = [
    pytest.param(
        {"query": "{ me " + "{ roles " * 40 + "{ name }" + " }" * 41},
        "GRAPHQL_VALIDATION_FAILED",
        id="deep-query",
    ),
    pytest.param(
        {"query": "{ " + " ".join(f"a{i}: __typename" for i in range(3000)) + " }"},
        "GRAPHQL_PARSE_FAILED",
        id="thousands-of-aliases",
    ),
    pytest.param(
        {
            "query": "query { ...A } fragment A on Query { ...B ...B } "
            "fragment B on Query { "
            + " ".join(f"b{i}: __typename" for i in range(20))
            + " }"
        },
        "GRAPHQL_VALIDATION_FAILED",
        id="aliases-in-fragments",
    ),
    pytest.param(
        {"query": "fragment A on Query { ...B } fragment B on Query { ...A } { ...A }"},
        "GRAPHQL_VALIDATION_FAILED",
        id="circular-fragments",
    ),
    pytest.param(
        {"query": "{ users(limit: 1000000) { items { username } } }"},
        "BAD_USER_INPUT",
        id="huge-page",
    ),
    pytest.param(
        {
            "query": "{ "
            + " ".join(
                f"u{i}: users(limit: 100) "
                "{ items { roles { name description builtin permissions } } }"
                for i in range(2)
            )
            + " }"
        },
        "GRAPHQL_VALIDATION_FAILED",
        id="costly-lists",
    ),
    pytest.param(
        {
            "query": "query($l: Int!) { users(limit: $l) { totalCount } }",
            "variables": {"l": "many"},
        },
        "BAD_USER_INPUT",
        id="wrong-variable-type",
    ),
]


@pytest.mark.parametrize(("body", "code"), ATTACKS)
def test_attack_gets_its_code(production: RunningService, counts_before, body, code):
    response = production.post(body, token=production.login("admin"))
    assert response.json()["data"] is None or "errors" in response.json()
    assert code in _codes(response)
    assert production.is_alive()
    assert _row_counts(production) == counts_before


@pytest.mark.parametrize(
    ("content", "headers", "status", "code"),
    [
        pytest.param(
            b"{" * 50,
            {"Content-Type": "application/json"},
            400,
            "BAD_REQUEST",
            id="malformed-json",
        ),
        pytest.param(
            b"query=mutation%7BdeleteRole(name%3A%22viewer%22)%7D",
            {"Content-Type": "application/x-www-form-urlencoded"},
            400,
            "BAD_REQUEST",
            id="form-mutation",
        ),
        pytest.param(
            b'{"query": "' + b" " * (2 << 20) + b'{ __typename }"}',
            {"Content-Type": "application/json"},
            413,
            "PAYLOAD_TOO_LARGE",
            id="oversized-body",
        ),
    ],
)
def test_transport_attacks(
    production: RunningService, counts_before, content, headers, status, code
):
    response = httpx.post(production.url, content=content, headers=headers, timeout=30)
    assert response.status_code == status
    assert _codes(response) == [code]
    assert _row_counts(production) == counts_before


def test_get_mutation_is_refused(production: RunningService, counts_before):
    response = httpx.get(
        production.url,
        params={"query": 'mutation { deleteRole(name: "viewer") }'},
        timeout=30,
    )
    assert response.status_code == 400
    assert _row_counts(production) == counts_before


def test_security_headers(production: RunningService):
    response = production.post({"query": "{ __typename }"})
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_cors_allows_only_listed_origins(production: RunningService):
    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            production.url,
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
            timeout=30,
        )

    allowed = preflight("https://app.example")
    refused = preflight("https://evil.example")

    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in refused.headers


def test_cors_is_closed_by_default(service: RunningService):
    response = httpx.options(
        service.url,
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
        },
        timeout=30,
    )
    assert "access-control-allow-origin" not in response.headers


def test_errors_leak_nothing(production: RunningService):
    log_before = production.log_text()
    assert "Traceback" not in log_before
    response = production.post({"query": "{ me { id } }"}, token="a.b.c")
    text_body = response.text
    for marker in ("Traceback", "sqlalchemy", "/work/", ".py", "SELECT"):
        assert marker not in text_body


def test_no_suggestions_in_extensions(production: RunningService):
    response = production.post(
        {"query": '{ predict(input: {penguins: {islnd: "Dream"}}) { label } }'},
        token=production.login("viewer"),
    )
    assert "Did you mean" not in response.text


def test_trusted_proxy_passes_request_id_and_client_ip(production: RunningService):
    response = httpx.post(
        production.url,
        json={
            "query": 'mutation { login(username: "ghost", password: "no-such-pass-1") '
            "{ tokenType } }"
        },
        headers={"X-Request-ID": "proxy-id-42", "X-Forwarded-For": "198.51.100.7"},
        timeout=30,
    )
    assert response.headers["x-request-id"] == "proxy-id-42"
    log = production.log_text()
    assert "ip=198.51.100.7 request_id=proxy-id-42" in log


def test_metrics_need_the_scraper_token(production: RunningService):
    url = production.url.replace("/graphql", "/metrics")
    anonymous = httpx.get(url, timeout=30)
    wrong = httpx.get(url, headers={"Authorization": "Bearer guess"}, timeout=30)
    right = httpx.get(
        url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30
    )
    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert "fieldguard_graphql_requests_total" in right.text


def test_logs_are_json_lines(production: RunningService):
    import json

    token = production.login("viewer")
    production.post({"query": "query Probe { me { id } }"}, token=token)
    lines = [line for line in production.log_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys()
    probes = [e for e in entries if e.get("operation") == "Probe"]
    assert probes
    assert probes[-1]["code"] == "OK"
    assert probes[-1]["user_id"] is not None
    assert probes[-1]["latency_ms"] >= 0
    assert len(probes[-1]["request_id"]) == 32


def test_operation_lines_carry_the_client_code(production: RunningService):
    import json

    production.post(
        {
            "query": 'mutation BadLogin { login(username: "admin", '
            'password: "not-it-at-all-1") { tokenType } }'
        }
    )
    production.post({"query": "query Typo { mee }"})
    entries = [
        json.loads(line) for line in production.log_text().splitlines() if line.strip()
    ]
    codes = {e["operation"]: e["code"] for e in entries if "operation" in e}
    assert codes["BadLogin"] == "UNAUTHENTICATED"
    assert codes["Typo"] == "GRAPHQL_VALIDATION_FAILED"


def test_metrics_accept_any_case_of_bearer(production: RunningService):
    response = httpx.get(
        production.url.replace("/graphql", "/metrics"),
        headers={"Authorization": f"bearer {METRICS_TOKEN}"},
        timeout=30,
    )
    assert response.status_code == 200

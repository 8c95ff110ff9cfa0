"""HTTP-level attacks: every one gets a JSON error with a code, and the
service keeps serving."""

import json
import uuid

import httpx
import pytest

from tests.support import RunningService

JSON = {"Content-Type": "application/json"}


def _post_raw(service: RunningService, body: bytes, headers=None) -> httpx.Response:
    return httpx.post(service.url, content=body, headers=headers or JSON, timeout=30)


def _error(response: httpx.Response) -> dict:
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["data"] is None
    assert len(body["errors"]) == 1
    return body["errors"][0]


MALFORMED = [
    pytest.param(b"null", id="null"),
    pytest.param(b"5", id="number"),
    pytest.param(b'"query"', id="string"),
    pytest.param(b'[{"query": "{ __typename }"}]', id="batch"),
    pytest.param(b'{"query": ', id="truncated"),
    pytest.param(b'{"query": "{ __typename }", "x": "\xff"}', id="invalid-utf8"),
    pytest.param(
        b'{"query": "{ __typename }", "x": ' + b"9" * 5000 + b"}", id="huge-int"
    ),
    pytest.param(
        b'{"query": "{ __typename }", "variables": {"a": '
        + b"[" * 5000
        + b"]" * 5000
        + b"}}",
        id="deep-nesting",
    ),
]


@pytest.mark.parametrize("body", MALFORMED)
def test_malformed_body_is_bad_request(service: RunningService, body):
    response = _post_raw(service, body)

    assert response.status_code == 400
    error = _error(response)
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert error["extensions"]["requestId"] == response.headers["x-request-id"]
    assert service.is_alive()


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        pytest.param(
            {"Content-Type": "text/plain"},
            b'{"query": "{ __typename }"}',
            id="text-plain",
        ),
        pytest.param(
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"query=mutation%7Blogin(username%3A%22a%22%2Cpassword%3A%22b%22)%7BtokenType%7D%7D",
            id="html-form",
        ),
        pytest.param({"Content-Type": "application/json"}, b"{}", id="no-query"),
    ],
)
def test_unsupported_requests_are_bad_request(service: RunningService, headers, body):
    response = _post_raw(service, body, headers)
    assert response.status_code == 400
    assert _error(response)["extensions"]["code"] == "BAD_REQUEST"


def test_mutation_over_get_is_refused(service: RunningService):
    response = httpx.get(
        service.url,
        params={
            "query": 'mutation { login(username: "a", password: "b") { tokenType } }'
        },
        timeout=30,
    )
    assert response.status_code == 400
    assert _error(response)["extensions"]["code"] == "BAD_REQUEST"


def test_wrong_method_is_json(service: RunningService):
    response = httpx.put(service.url, json={"query": "{ __typename }"}, timeout=30)
    assert response.status_code == 405
    assert _error(response)["extensions"]["code"] == "BAD_REQUEST"


def test_oversized_body_is_rejected(service: RunningService):
    query = "{ __typename " + " " * (2 * 1024 * 1024) + "}"
    response = httpx.post(service.url, json={"query": query}, timeout=30)
    assert response.status_code == 413
    error = _error(response)
    assert error["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert error["extensions"]["maxBytes"] == 1024 * 1024


def test_websocket_handshake_is_refused(service: RunningService):
    response = httpx.get(
        service.url,
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Protocol": "graphql-transport-ws",
        },
        timeout=30,
    )
    assert response.status_code == 403
    assert service.is_alive()


@pytest.mark.parametrize("escape", ["\\u0000", "\\ud800"])
def test_unstorable_strings_in_variables(service: RunningService, escape):
    # Written by hand because json.dumps would not produce a lone surrogate.
    body = (
        '{"query": "mutation($u: String!) { login(username: $u, password: '
        '\\"irrelevant-pass\\") { tokenType } }", '
        '"variables": {"u": "ana' + escape + '"}}'
    )
    response = _post_raw(service, body.encode())
    assert response.status_code == 400
    assert _error(response)["extensions"]["code"] == "BAD_USER_INPUT"
    assert service.is_alive()


@pytest.mark.parametrize(
    ("escape", "code"),
    [("\\u0000", "BAD_USER_INPUT"), ("\\ud800", "GRAPHQL_PARSE_FAILED")],
)
def test_unstorable_strings_in_literals(service: RunningService, escape, code):
    query = (
        'mutation { login(username: "ana' + escape + '", password: "x") { tokenType } }'
    )
    body = service.post({"query": query}).json()
    assert [e["extensions"]["code"] for e in body["errors"]] == [code]


def test_unknown_fragment_is_validation_error(service: RunningService):
    body = service.post({"query": "{ ...Undefined }"}).json()
    assert [e["extensions"]["code"] for e in body["errors"]] == [
        "GRAPHQL_VALIDATION_FAILED"
    ]


def test_several_operations_need_a_name(service: RunningService):
    document = "query A { __typename } query B { __typename }"
    unnamed = service.post({"query": document}).json()
    named = service.post({"query": document, "operationName": "B"}).json()

    assert unnamed["data"] is None
    assert [e["extensions"]["code"] for e in unnamed["errors"]] == [
        "GRAPHQL_VALIDATION_FAILED"
    ]
    assert named == {"data": {"__typename": "Query"}}


def test_aliases_are_limited_through_fragments(service: RunningService, tokens):
    fields = " ".join(f"a{i}: __typename" for i in range(20))
    document = (
        f"fragment F on Query {{ {fields} }} "
        "query { ...F b: __typename ...G } "
        f"fragment G on Query {{ {fields} }}"
    )
    body = service.post({"query": document}, token=tokens["viewer"]).json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"] == {
        "code": "GRAPHQL_VALIDATION_FAILED",
        "limit": "aliases",
    }


def test_token_limit_applies(service: RunningService):
    document = "{ " + "__typename " * 2500 + "}"
    body = service.post({"query": document}).json()
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert "tokens" in body["errors"][0]["message"]


def test_two_authorization_headers_are_distrusted(service: RunningService, tokens):
    # The same new text twice: the first request runs through Strawberry, the
    # second on the known-operation path.
    query = f"# {uuid.uuid4().hex}\n{{ me {{ username }} }}"
    for _ in range(2):
        response = httpx.post(
            service.url,
            json={"query": query},
            headers=[
                ("Authorization", f"Bearer {tokens['viewer']}"),
                ("Authorization", f"Bearer {tokens['admin']}"),
            ],
            timeout=30,
        )
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "UNAUTHENTICATED"
        assert "several Authorization headers" in error["message"]


def test_two_content_types_are_refused(service: RunningService, tokens):
    query = f"# {uuid.uuid4().hex}\n{{ me {{ username }} }}"
    body = json.dumps({"query": query})
    # The first request is refused as it is; then the document becomes known,
    # and the same request must be refused on the known-operation path too.
    for known in (False, True):
        if known:
            assert service.post({"query": query}, token=tokens["viewer"]).is_success
        response = httpx.post(
            service.url,
            content=body,
            headers=[
                ("Content-Type", "text/plain"),
                ("Content-Type", "application/json"),
                ("Authorization", f"Bearer {tokens['viewer']}"),
            ],
            timeout=30,
        )
        error = response.json()["errors"][0]
        assert response.status_code == 400
        assert error["extensions"]["code"] == "BAD_REQUEST"
        assert "one Content-Type" in error["message"]
    assert service.is_alive()


def test_forwarded_for_is_not_believed(service: RunningService):
    httpx.post(
        service.url,
        json={
            "query": (
                'mutation { login(username: "ghost-user", password: '
                '"irrelevant-1") { tokenType } }'
            )
        },
        headers={"X-Forwarded-For": "203.0.113.9"},
        timeout=30,
    )
    log = service.log_text()
    assert "ip=203.0.113.9" not in log
    assert "ip=127.0.0.1" in log


def test_variable_errors_name_the_field(service: RunningService, tokens):
    result = service.execute(
        "query($input: PredictInput!) { predict(input: $input) { label } }",
        {"input": {"penguins": {"bodyMassG": "heavy"}}},
        token=tokens["analyst"],
    )
    extensions = result.errors[0]["extensions"]
    assert extensions["code"] == "BAD_USER_INPUT"
    assert extensions["field"] == "bodyMassG"
    assert "Float" in extensions["reason"]


def test_log_has_no_tracebacks_or_secrets(service: RunningService, tokens):
    # Runs after the attacks above in this module, on the same server.
    log = service.log_text()
    assert "Traceback" not in log
    for username, password in service.passwords.items():
        assert password not in log, f"password of {username} logged"
    for username, token in tokens.items():
        assert token not in log, f"token of {username} logged"


def test_fragment_bomb_is_rejected_quickly(service: RunningService):
    levels = 30
    fragments = " ".join(
        f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)
    )
    query = (
        f"query {{ ...F0 }} {fragments} fragment F{levels} on Query {{ __typename }}"
    )
    # Without per-fragment memoization this took hours; the client timeout
    # of 30 seconds bounds the test.
    body = service.post({"query": query}).json()
    assert body["data"] is None
    limits = {e["extensions"].get("limit") for e in body["errors"]}
    assert "cost" in limits


@pytest.mark.parametrize(
    "content_type",
    ["application/json-x", "text/x-application/json", '"application/json"'],
)
def test_json_like_content_types_are_checked(service: RunningService, content_type):
    body = (
        '{"query": "mutation($p: String!) { login(username: \\\\"admin\\\\", '
        'password: $p) { tokenType } }", "variables": {"p": "abc\\\\ud800"}}'
    )
    response = _post_raw(service, body.encode(), {"Content-Type": content_type})
    assert response.status_code == 400
    assert _error(response)["extensions"]["code"] in {"BAD_USER_INPUT", "BAD_REQUEST"}


def test_log_lines_cannot_be_forged(service: RunningService, tokens):
    forged = (
        "nope\n2026-12-04 18:00:00,000 INFO graph.forged: Login succeeded: user_id=1"
    )
    result = service.execute(
        "mutation($n: String!) { deleteRole(name: $n) }",
        {"n": forged},
        token=tokens["admin"],
    )
    assert result.codes() == ["NOT_FOUND"]
    assert "\n2026-12-04 18:00:00,000 INFO graph.forged" not in service.log_text()


def test_get_query_strings_stay_out_of_the_log(service: RunningService):
    canary = "Secret-Canary-Pass-" + "7" * 6
    httpx.get(
        service.url,
        params={
            "query": 'mutation($p: String!) { login(username: "x", password: $p) '
            "{ tokenType } }",
            "variables": f'{{"p": "{canary}"}}',
        },
        timeout=30,
    )
    assert canary not in service.log_text()


def test_health_endpoints(service: RunningService):
    base = service.url.removesuffix("/graphql")
    health = httpx.get(f"{base}/healthz", timeout=10)
    ready = httpx.get(f"{base}/readyz", timeout=10)
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"models": "ok", "database": "ok"},
    }


def test_request_id_from_untrusted_client_is_replaced(service: RunningService):
    response = httpx.post(
        service.url,
        json={"query": "{ __typename }"},
        headers={"X-Request-ID": "client-chosen-id"},
        timeout=30,
    )
    assert response.headers["x-request-id"] != "client-chosen-id"
    assert len(response.headers["x-request-id"]) == 32


def test_metrics_count_operations_predictions_and_logins(
    service: RunningService, tokens
):
    service.execute(
        'query Named { predict(input: {penguins: {island: "Dream"}}) { label } }',
        token=tokens["viewer"],
    )
    service.execute(
        'mutation { login(username: "nobody-at-all", password: "wrong-pass-12") '
        "{ tokenType } }"
    )
    body = httpx.get(service.url.replace("/graphql", "/metrics"), timeout=30).text

    assert 'fieldguard_graphql_requests_total{code="OK",operation="Named"}' in body
    assert 'fieldguard_predictions_total{model="penguins",outcome="success"' in body
    assert "fieldguard_predicted_rows_total" in body
    assert 'fieldguard_logins_total{outcome="failure",reason="unknown_user"}' in body
    assert "fieldguard_model_load_seconds_count 1.0" in body
    active = [
        line
        for line in body.splitlines()
        if line.startswith("fieldguard_active_sessions ")
    ]
    assert active
    assert float(active[0].split()[1]) >= 1
    assert "fieldguard_login_delays_total" in body


def test_readiness_reads_the_schema(tmp_path, model_dir):
    """A database without fieldguard's tables is not ready, though it responds."""
    from tests.support import service_env, start_server, stop_server

    env = service_env(
        database_url=f"sqlite:///{tmp_path / 'ready.db'}",
        model_dir=model_dir,
        data_dir=tmp_path / "data",
    )
    from tests.support import run_cli

    assert run_cli(env, "init").returncode == 0
    process, url = start_server(env, tmp_path / "ready.log")
    try:
        (tmp_path / "ready.db").rename(tmp_path / "moved.db")
        ready = httpx.get(url.replace("/graphql", "/readyz"), timeout=30)
    finally:
        stop_server(process)
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("failed")

"""Known operations: a query sent again runs on the direct path, and its
response equals the one the full Strawberry path returned."""

import json
import re
import time
import uuid

import httpx
import pytest

from tests.support import RunningService

PREDICT = """
query Known($input: PredictInput!) {
  predict(input: $input) { label probabilities { label probability } }
}
"""

CASES = [
    pytest.param(
        "analyst", PREDICT, {"input": {"penguins": {"island": "Dream"}}}, id="data"
    ),
    pytest.param(
        "viewer", PREDICT, {"input": {"penguins": {"island": "Dream"}}}, id="denied"
    ),
    pytest.param(
        None, PREDICT, {"input": {"penguins": {"island": "Dream"}}}, id="anonymous"
    ),
    pytest.param(
        "analyst",
        PREDICT,
        {"input": {"penguins": {"bodyMassG": "heavy"}}},
        id="variable-type",
    ),
    pytest.param(
        "analyst",
        PREDICT,
        {"input": {"penguins": {"island": "Atlantis"}}},
        id="invalid-feature",
    ),
    pytest.param(
        "analyst",
        "query Page($n: Int) { users(limit: $n) { totalCount } }",
        {"n": 100_000},
        id="page-limit",
    ),
    pytest.param("viewer", "query Me { me { username roles { name } } }", {}, id="me"),
]


def _without_request_ids(value: object) -> object:
    if isinstance(value, dict):
        return {
            key: _without_request_ids(item)
            for key, item in value.items()
            if key != "requestId"
        }
    if isinstance(value, list):
        return [_without_request_ids(item) for item in value]
    return value


def _path(service: RunningService, request_id: str) -> tuple[bool, bool]:
    """Return the `known` and `planned` fields of the request's operation line."""
    pattern = re.compile(
        rf"GraphQL operation .*request_id={request_id} known=(\w+) planned=(\w+)"
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        match = pattern.search(service.log_text())
        if match:
            return match.group(1) == "True", match.group(2) == "True"
        time.sleep(0.05)
    raise AssertionError(f"no operation line for request {request_id}")


@pytest.mark.parametrize(("persona", "query", "variables"), CASES)
def test_known_path_matches_full_path(
    service: RunningService, tokens, persona, query, variables
):
    # A comment makes the text new, so the first request takes the full path.
    text = f"# {uuid.uuid4().hex}\n{query}"
    token = tokens[persona] if persona else None
    body = {"query": text, "variables": variables}

    first = service.post(body, token=token)
    second = service.post(body, token=token)

    assert first.status_code == second.status_code == 200
    assert _without_request_ids(second.json()) == _without_request_ids(first.json())
    assert _path(service, first.headers["x-request-id"]) == (False, False)
    assert _path(service, second.headers["x-request-id"]) == (True, True)


@pytest.mark.parametrize(
    ("persona", "query", "operation"),
    [
        pytest.param("viewer", "{ me { nosuchfield } }", None, id="invalid"),
        # Anonymous, so that the mutation changes nothing.
        pytest.param(None, "mutation { logout }", None, id="mutation"),
        pytest.param(
            "admin", "{ __schema { queryType { name } } }", None, id="introspection"
        ),
        pytest.param(
            "viewer", "query A { me { id } } query B { me { id } }", "A", id="two"
        ),
    ],
)
def test_other_documents_stay_on_full_path(
    service: RunningService, tokens, persona, query, operation
):
    body = {"query": f"# {uuid.uuid4().hex}\n{query}", "operationName": operation}
    token = tokens[persona] if persona else None

    service.post(body, token=token)
    second = service.post(body, token=token)

    assert _path(service, second.headers["x-request-id"]) == (False, False)


def test_documents_without_a_plan_run_on_graphql_core(service: RunningService, tokens):
    query = (
        "query Me($full: Boolean!) "
        "{ me { username roles @include(if: $full) { name } } }"
    )
    body = {"query": f"# {uuid.uuid4().hex}\n{query}", "variables": {"full": True}}

    first = service.post(body, token=tokens["viewer"])
    second = service.post(body, token=tokens["viewer"])

    assert second.json() == first.json()
    assert second.json()["data"]["me"]["roles"] == [{"name": "viewer"}]
    assert _path(service, second.headers["x-request-id"]) == (True, False)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain; charset=application/json",
        "application/x-www-form-urlencoded; a=application/json",
        "APPLICATION/JSON",
    ],
)
def test_known_path_needs_a_json_media_type(
    service: RunningService, tokens, content_type
):
    query = f"# {uuid.uuid4().hex}\nquery Me {{ me {{ username }} }}"
    body = json.dumps({"query": query}).encode()
    service.post({"query": query}, token=tokens["viewer"])  # now known

    response = httpx.post(
        service.url,
        content=body,
        headers={
            "Content-Type": content_type,
            "Authorization": f"Bearer {tokens['viewer']}",
        },
        timeout=30,
    )

    assert response.status_code == 400
    assert "content type" in response.json()["errors"][0]["message"].lower()


def test_other_operation_name_gets_the_full_path_error(service: RunningService, tokens):
    query = f"# {uuid.uuid4().hex}\nquery Me {{ me {{ username }} }}"
    service.post({"query": query}, token=tokens["viewer"])  # now known
    body = {"query": query, "operationName": "Other"}

    first = service.post(body, token=tokens["viewer"])
    second = service.post(body, token=tokens["viewer"])

    assert first.status_code == second.status_code == 400
    assert second.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert "operation=Other" not in service.log_text()


def test_long_documents_are_not_kept(service: RunningService, tokens):
    padding = " " * 25_000
    body = {"query": f"# {uuid.uuid4().hex}\n{{ me {{ username }} }}{padding}"}

    service.post(body, token=tokens["viewer"])
    second = service.post(body, token=tokens["viewer"])

    assert second.json()["data"]["me"]["username"]
    assert _path(service, second.headers["x-request-id"]) == (False, False)


def test_known_operation_writes_one_log_line(service: RunningService, tokens):
    body = {"query": f"# {uuid.uuid4().hex}\nquery Me {{ me {{ username }} }}"}

    first = service.post(body, token=tokens["viewer"])
    second = service.post(body, token=tokens["viewer"])
    # One more round trip: by its end, both requests' lines are written.
    service.post({"query": "{ __typename }"})

    assert _path(service, second.headers["x-request-id"]) == (True, True)
    access = [
        line for line in service.log_text().splitlines() if "POST /graphql" in line
    ]
    assert any(first.headers["x-request-id"] in line for line in access)
    assert not any(second.headers["x-request-id"] in line for line in access)

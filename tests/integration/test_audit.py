"""The audit log: what is recorded, who may read it, and what never appears."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.support import RunningService, unique_name

EVENTS = """
query($filter: AuditEventFilter, $limit: Int!) {
  auditEvents(filter: $filter, limit: $limit) {
    totalCount
    items {
      occurredAt actorId actorUsername action targetType targetId outcome
      clientIp userAgent requestId details
    }
  }
}
"""
LOGIN = (
    "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { "
    "tokenType } }"
)


def _events(service: RunningService, token: str, **filters) -> list[dict]:
    result = service.execute(EVENTS, {"filter": filters, "limit": 100}, token=token)
    assert result.errors == []
    return result.data["auditEvents"]["items"]


def test_logins_are_recorded(service: RunningService, tokens):
    user_id, username, password = service.add_user(["viewer"])
    service.execute(LOGIN, {"u": username, "p": password})
    service.execute(LOGIN, {"u": username, "p": "wrong-password-123"})

    events = _events(service, tokens["auditor"], action="login", targetId=user_id)

    outcomes = [event["outcome"] for event in events]
    assert outcomes == ["failure", "success"]
    failure, success = events
    assert failure["details"] == {"reason": "wrong_password"}
    assert success["actorUsername"] == username
    for event in events:
        assert event["clientIp"] == "127.0.0.1"
        assert event["userAgent"]
        assert len(event["requestId"]) == 32


def test_unknown_user_login_is_recorded(service: RunningService, tokens):
    ghost = unique_name("ghost")
    service.execute(LOGIN, {"u": ghost, "p": "whatever-pass-1"})
    since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    events = _events(service, tokens["auditor"], action="login", since=since)
    assert any(e["details"] == {"reason": "unknown_user"} for e in events)
    assert all(ghost not in json.dumps(e) for e in events)


def test_changes_are_recorded_with_actor(service: RunningService, tokens):
    admin_id = service.execute("{ me { id } }", token=tokens["admin"]).data["me"]["id"]
    user_id, _, _ = service.add_user([])
    service.execute(
        'mutation($id: ID!) { setUserRoles(id: $id, roles: ["viewer"]) { id } }',
        {"id": user_id},
        token=tokens["admin"],
    )
    service.execute(
        'mutation($id: ID!) { setUserRoles(id: $id, roles: ["admin"]) { id } }',
        {"id": user_id},
        token=tokens["viewer"],
    )

    events = _events(service, tokens["auditor"], targetType="user", targetId=user_id)
    actions = [(e["action"], e["outcome"]) for e in events]
    assert ("user.create", "success") in actions
    assert ("user.set_roles", "success") in actions
    role_change = next(e for e in events if e["action"] == "user.set_roles")
    assert role_change["actorId"] == admin_id
    assert role_change["details"] == {"added": ["viewer"], "removed": []}


def test_denied_change_is_recorded(service: RunningService, tokens):
    role = unique_name("grabber")
    _, username, _ = service.add_user([])
    service.execute(
        "mutation($n: String!) { createRole(input: {name: $n, permissions: "
        '["roles:write"]}) { name } }',
        {"n": role},
        token=tokens["admin"],
    )
    service.execute(
        "mutation($id: ID!, $r: [String!]!) { setUserRoles(id: $id, roles: $r) { "
        "id } }",
        {
            "id": service.execute(
                "query($s: String) { users(filter: {search: $s}) { items { id } } }",
                {"s": username},
                token=tokens["admin"],
            ).data["users"]["items"][0]["id"],
            "r": [role],
        },
        token=tokens["admin"],
    )
    grabber = service.login(username)
    service.execute(
        'mutation { createRole(input: {name: "audit-grab", permissions: '
        '["audit:read"]}) { name } }',
        token=grabber,
    )
    events = _events(
        service, tokens["auditor"], action="role.create", targetId="audit-grab"
    )
    assert [e["outcome"] for e in events] == ["denied"]
    assert events[0]["actorUsername"] == username


def test_audit_never_holds_passwords_or_tokens(service: RunningService, tokens):
    result = service.execute(EVENTS, {"limit": 100}, token=tokens["auditor"])
    dump = json.dumps(result.data)
    for password in service.passwords.values():
        assert password not in dump
    for token in tokens.values():
        assert token not in dump


def test_time_range_filter(service: RunningService, tokens):
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    past = "2000-01-01T00:00:00+00:00"
    assert _events(service, tokens["auditor"], since=future) == []
    assert _events(service, tokens["auditor"], until=past) == []


@pytest.mark.parametrize("limit", [0, 101])
def test_audit_page_bounds(service: RunningService, tokens, limit):
    result = service.execute(EVENTS, {"limit": limit}, token=tokens["auditor"])
    assert result.codes() == ["BAD_USER_INPUT"]


def test_predictions_are_audited_without_inputs(service: RunningService, tokens):
    marker = 47.123
    service.execute(
        "query($m: Float) { predict(input: {penguins: {billLengthMm: $m}}) { label } }",
        {"m": marker},
        token=tokens["viewer"],
    )
    events = _events(service, tokens["auditor"], action="predict")
    latest = events[0]
    assert latest["actorUsername"] == "viewer"
    assert latest["targetId"] == "penguins"
    assert latest["outcome"] == "success"
    assert latest["details"]["rows"] == 1
    assert latest["details"]["latencyMs"] >= 0
    assert str(marker) not in json.dumps(events)

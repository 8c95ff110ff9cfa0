"""Sessions, refresh tokens and the cases where access tokens stop at once."""

import threading
import time

import jwt
import pytest

from tests.support import RunningService, run_cli, strong_password

ME = "{ me { username } }"
SESSIONS = "{ mySessions { id current clientIp userAgent createdAt expiresAt } }"


def _codes(service: RunningService, token: str) -> list[str]:
    return service.execute(ME, token=token).codes()


def test_refresh_token_is_opaque_and_long(service: RunningService):
    _, username, _ = service.add_user(["viewer"])
    pair = service.login_pair(username)
    assert "." not in pair["refreshToken"]
    assert len(pair["refreshToken"]) >= 43  # 256 bits in URL-safe base64
    claims = jwt.decode(pair["accessToken"], options={"verify_signature": False})
    assert len(claims["sid"]) == 32


def test_refresh_rotates_tokens(service: RunningService):
    _, username, _ = service.add_user(["viewer"])
    first = service.login_pair(username)

    second = service.refresh(first["refreshToken"])
    assert second.errors == []
    rotated = second.data["refreshToken"]
    third = service.refresh(rotated)

    assert rotated != first["refreshToken"]
    assert third.errors == []
    assert (
        _codes(service, third.data["refreshToken"] and third.data["accessToken"]) == []
    )


def test_reuse_revokes_the_session(service: RunningService, tokens):
    user_id, username, _ = service.add_user(["viewer"])
    first = service.login_pair(username)
    second = service.refresh(first["refreshToken"]).data
    third = service.refresh(second["refreshToken"]).data

    with service.clock_moved(30):  # past the retry grace
        reused = service.refresh(first["refreshToken"])
    after = service.refresh(third["refreshToken"])

    assert reused.codes() == ["UNAUTHENTICATED"]
    assert after.codes() == ["UNAUTHENTICATED"]
    assert _codes(service, third["accessToken"]) == ["UNAUTHENTICATED"]
    events = service.execute(
        '{ auditEvents(filter: {action: "session.refresh_reuse"}) '
        "{ items { actorId outcome } } }",
        token=tokens["auditor"],
    ).data["auditEvents"]["items"]
    assert {"actorId": user_id, "outcome": "denied"} in events


def test_retry_within_grace_gets_the_same_pair(service: RunningService):
    _, username, _ = service.add_user(["viewer"])
    first = service.login_pair(username)
    results = []

    def use() -> None:
        results.append(service.refresh(first["refreshToken"]))

    threads = [threading.Thread(target=use) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert [r.errors for r in results] == [[], []]
    assert results[0].data["refreshToken"] == results[1].data["refreshToken"]
    assert service.refresh(results[0].data["refreshToken"]).errors == []


def test_retry_of_an_older_token_is_reuse(service: RunningService):
    _, username, _ = service.add_user(["viewer"])
    first = service.login_pair(username)
    second = service.refresh(first["refreshToken"]).data
    service.refresh(second["refreshToken"])
    # first is two rotations old: no grace, even within seconds.
    assert service.refresh(first["refreshToken"]).codes() == ["UNAUTHENTICATED"]


def test_idle_session_ends(service: RunningService):
    _, username, _ = service.add_user(["viewer"])
    pair = service.login_pair(username)
    with service.clock_moved(31 * 60):
        idle = service.refresh(pair["refreshToken"])
    assert idle.codes() == ["UNAUTHENTICATED"]


def test_active_session_ends_at_absolute_lifetime(service: RunningService):
    _, username, _ = service.add_user(["viewer"])
    refresh_token = service.login_pair(username)["refreshToken"]
    try:
        # A refresh every 25 minutes keeps the session from going idle.
        for step in range(1, 29):
            service.clock_file.write_text(str(step * 25 * 60))
            result = service.refresh(refresh_token)
            assert result.errors == [], f"refused after {step * 25} minutes"
            refresh_token = result.data["refreshToken"]
        service.clock_file.write_text(str(12 * 3600 + 60))
        assert service.refresh(refresh_token).codes() == ["UNAUTHENTICATED"]
    finally:
        service.clock_file.write_text("0")


def test_logout_stops_access_and_refresh(service: RunningService):
    _, username, _ = service.add_user(["viewer"])
    pair = service.login_pair(username)
    other = service.login_pair(username)

    result = service.execute("mutation { logout }", token=pair["accessToken"])

    assert result.data == {"logout": True}
    assert _codes(service, pair["accessToken"]) == ["UNAUTHENTICATED"]
    assert service.refresh(pair["refreshToken"]).codes() == ["UNAUTHENTICATED"]
    assert _codes(service, other["accessToken"]) == []


def test_logout_all_ends_every_session(service: RunningService):
    _, username, _ = service.add_user(["viewer"])
    pairs = [service.login_pair(username) for _ in range(3)]

    result = service.execute("mutation { logoutAll }", token=pairs[0]["accessToken"])

    assert result.data == {"logoutAll": 3}
    for pair in pairs:
        assert _codes(service, pair["accessToken"]) == ["UNAUTHENTICATED"]
        assert service.refresh(pair["refreshToken"]).codes() == ["UNAUTHENTICATED"]


def test_my_sessions_and_revoke_one(service: RunningService):
    _, username, _ = service.add_user(["viewer"])
    kept = service.login_pair(username)
    ended = service.login_pair(username)

    sessions = service.execute(SESSIONS, token=kept["accessToken"]).data["mySessions"]
    assert len(sessions) == 2
    assert sum(s["current"] for s in sessions) == 1
    assert all(s["clientIp"] == "127.0.0.1" for s in sessions)
    assert all(s["userAgent"] for s in sessions)
    other_id = next(s["id"] for s in sessions if not s["current"])

    revoked = service.execute(
        "mutation($id: ID!) { revokeSession(id: $id) }",
        {"id": other_id},
        token=kept["accessToken"],
    )
    assert revoked.data == {"revokeSession": True}
    assert _codes(service, ended["accessToken"]) == ["UNAUTHENTICATED"]
    assert _codes(service, kept["accessToken"]) == []


def test_cannot_revoke_someone_elses_session(service: RunningService):
    _, owner, _ = service.add_user(["viewer"])
    _, intruder, _ = service.add_user(["viewer"])
    owner_pair = service.login_pair(owner)
    session_id = jwt.decode(
        owner_pair["accessToken"], options={"verify_signature": False}
    )["sid"]

    attempt = service.execute(
        "mutation($id: ID!) { revokeSession(id: $id) }",
        {"id": session_id},
        token=service.login(intruder),
    )
    missing = service.execute(
        "mutation($id: ID!) { revokeSession(id: $id) }",
        {"id": "0" * 32},
        token=service.login(intruder),
    )
    assert attempt.codes() == ["NOT_FOUND"]
    assert attempt.errors[0]["message"] == missing.errors[0]["message"]
    assert _codes(service, owner_pair["accessToken"]) == []


def test_admin_ends_a_users_sessions(service: RunningService, tokens):
    user_id, username, _ = service.add_user(["viewer"])
    pair = service.login_pair(username)
    result = service.execute(
        "mutation($id: ID!) { revokeUserSessions(userId: $id) }",
        {"id": user_id},
        token=tokens["admin"],
    )
    assert result.data == {"revokeUserSessions": 1}
    assert _codes(service, pair["accessToken"]) == ["UNAUTHENTICATED"]


def test_password_change_ends_old_tokens(service: RunningService):
    _, username, password = service.add_user(["viewer"])
    pair = service.login_pair(username)
    new_password = strong_password()
    changed = service.execute(
        "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, "
        "newPassword: $n) { id } }",
        {"c": password, "n": new_password},
        token=pair["accessToken"],
    )
    assert changed.errors == []
    assert _codes(service, pair["accessToken"]) == ["UNAUTHENTICATED"]
    assert service.refresh(pair["refreshToken"]).codes() == ["UNAUTHENTICATED"]
    assert _codes(service, service.login(username, new_password)) == []


def test_reset_and_deactivation_end_old_tokens(service: RunningService, tokens):
    for mutation in (
        "mutation($id: ID!) { resetUserPassword(id: $id) { temporaryPassword } }",
        "mutation($id: ID!) { deactivateUser(id: $id) { id } }",
    ):
        user_id, username, _ = service.add_user(["viewer"])
        pair = service.login_pair(username)
        assert (
            service.execute(mutation, {"id": user_id}, token=tokens["admin"]).errors
            == []
        )
        assert _codes(service, pair["accessToken"]) == ["UNAUTHENTICATED"], mutation
        assert service.refresh(pair["refreshToken"]).codes() == ["UNAUTHENTICATED"]


def test_refresh_after_role_change_carries_new_grants(service: RunningService, tokens):
    user_id, username, _ = service.add_user(["viewer"])
    pair = service.login_pair(username)
    proba = (
        '{ predict(input: {penguins: {island: "Dream"}}) '
        "{ probabilities { probability } } }"
    )
    service.execute(
        'mutation($id: ID!) { setUserRoles(id: $id, roles: ["analyst"]) { id } }',
        {"id": user_id},
        token=tokens["admin"],
    )
    assert service.execute(proba, token=pair["accessToken"]).codes() == [
        "UNAUTHENTICATED"
    ]
    renewed = service.refresh(pair["refreshToken"]).data
    assert service.execute(proba, token=renewed["accessToken"]).errors == []


def test_unknown_and_huge_refresh_tokens(service: RunningService):
    for token in ("not-a-token", "x" * 10_000, ""):
        assert service.refresh(token).codes() == ["UNAUTHENTICATED"]


def test_access_token_keeps_working_and_counts_as_activity(service: RunningService):
    _, username, _ = service.add_user(["viewer"])
    pair = service.login_pair(username)
    try:
        service.clock_file.write_text("120")
        assert _codes(service, pair["accessToken"]) == []
        # Idle time now counts from the request above, not from the sign-in.
        service.clock_file.write_text(str(120 + 29 * 60))
        assert service.refresh(pair["refreshToken"]).errors == []
    finally:
        service.clock_file.write_text("0")


def test_retry_from_another_client_is_reuse(service: RunningService):
    import httpx

    _, username, _ = service.add_user(["viewer"])
    first = service.login_pair(username)
    assert service.refresh(first["refreshToken"]).errors == []
    stolen = httpx.post(
        service.url,
        json={
            "query": "mutation($t: String!) "
            "{ refreshToken(token: $t) { accessToken } }",
            "variables": {"t": first["refreshToken"]},
        },
        headers={"User-Agent": "attacker/1.0"},
        timeout=30,
    ).json()
    assert stolen["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # The session is revoked: the rightful client is signed out too.
    assert service.refresh(first["refreshToken"]).codes() == ["UNAUTHENTICATED"]


def test_cached_token_ends_on_cli_change(service: RunningService):
    """The server keeps sign-in state between requests. A password set with
    the command line, in another process, must still end the old token on
    its next use."""
    _, username, _ = service.add_user(["viewer"])
    token = service.login(username)
    for _ in range(3):  # read, then served from what the server kept
        assert _codes(service, token) == []

    changed = run_cli(
        service.env, "set-password", username, stdin=strong_password() + "\n"
    )

    assert changed.returncode == 0, changed.stderr
    if service.database_url.startswith("postgresql"):
        # The change reaches the server as a notice, a moment after the commit.
        deadline = time.monotonic() + 2
        while _codes(service, token) == [] and time.monotonic() < deadline:
            time.sleep(0.02)
    assert _codes(service, token) == ["UNAUTHENTICATED"]


def test_server_listens_for_changes_on_postgresql(service: RunningService):
    if not service.database_url.startswith("postgresql"):
        pytest.skip("SQLite uses a marker file, which other tests cover")
    assert "is listening for sign-in changes" in service.log_text()

"""Access token issue and verification, without a server."""

import jwt
import pytest

from graph.tokens import (
    InvalidToken,
    TokenSettings,
    issue_access_token,
    verify_access_token,
)

SETTINGS = TokenSettings(
    secret="s" * 48,
    issuer="fieldguard",
    audience="fieldguard",
    ttl_seconds=900,
    leeway_seconds=10,
)
NOW = 1_800_000_000
SID = "0123456789abcdef0123456789abcdef"


def test_round_trip_keeps_user_id():
    issued = issue_access_token(
        SETTINGS, user_id=42, session_id=SID, version=3, now=NOW
    )
    claims = verify_access_token(SETTINGS, issued.token, now=NOW + 1)
    assert claims.user_id == 42
    assert claims.session_id == SID
    assert claims.version == 3
    assert claims.expires_at == NOW + 900
    assert issued.expires_in == 900


def test_every_token_has_its_own_id():
    first = verify_access_token(
        SETTINGS,
        issue_access_token(
            SETTINGS, user_id=1, session_id=SID, version=1, now=NOW
        ).token,
        now=NOW,
    )
    second = verify_access_token(
        SETTINGS,
        issue_access_token(
            SETTINGS, user_id=1, session_id=SID, version=1, now=NOW
        ).token,
        now=NOW,
    )
    assert first.token_id != second.token_id


def test_expiry_allows_only_the_leeway():
    token = issue_access_token(
        SETTINGS, user_id=1, session_id=SID, version=1, now=NOW - 900
    ).token
    verify_access_token(SETTINGS, token, now=NOW + 9)
    with pytest.raises(InvalidToken):
        verify_access_token(SETTINGS, token, now=NOW + 11)


def test_future_issue_time_is_rejected():
    token = issue_access_token(
        SETTINGS, user_id=1, session_id=SID, version=1, now=NOW + 60
    ).token
    with pytest.raises(InvalidToken):
        verify_access_token(SETTINGS, token, now=NOW)


def test_required_claims_are_enforced():
    for claim in ("iss", "aud", "sub", "exp", "iat", "jti", "sid", "ver"):
        claims = {
            "iss": "fieldguard",
            "aud": "fieldguard",
            "sub": "1",
            "iat": NOW,
            "exp": NOW + 60,
            "jti": "x",
            "sid": SID,
            "ver": 1,
        }
        del claims[claim]
        token = jwt.encode(
            claims, SETTINGS.secret, algorithm="HS256", headers={"typ": "at+jwt"}
        )
        with pytest.raises(InvalidToken):
            verify_access_token(SETTINGS, token, now=NOW)


def test_non_numeric_subject_is_rejected():
    claims = {
        "iss": "fieldguard",
        "aud": "fieldguard",
        "sub": "admin",
        "iat": NOW,
        "exp": NOW + 60,
        "jti": "x",
        "sid": SID,
        "ver": 1,
    }
    token = jwt.encode(
        claims, SETTINGS.secret, algorithm="HS256", headers={"typ": "at+jwt"}
    )
    with pytest.raises(InvalidToken, match="subject"):
        verify_access_token(SETTINGS, token, now=NOW)


@pytest.mark.parametrize("header", ["jku", "x5u", "jwk", "x5c"])
def test_key_bearing_headers_are_rejected(header):
    issued = issue_access_token(SETTINGS, user_id=1, session_id=SID, version=1, now=NOW)
    claims = jwt.decode(
        issued.token, options={"verify_signature": False}, algorithms=["HS256"]
    )
    token = jwt.encode(
        claims,
        SETTINGS.secret,
        algorithm="HS256",
        headers={"typ": "at+jwt", header: "http://127.0.0.1:1/key"},
    )
    with pytest.raises(InvalidToken, match="own key"):
        verify_access_token(SETTINGS, token, now=NOW)


def _signed(**overrides: object) -> str:
    claims: dict[str, object] = {
        "iss": "fieldguard",
        "aud": "fieldguard",
        "sub": "1",
        "iat": NOW,
        "exp": NOW + 60,
        "jti": "x",
        "sid": SID,
        "ver": 1,
    }
    claims.update(overrides)
    return jwt.encode(
        claims, SETTINGS.secret, algorithm="HS256", headers={"typ": "at+jwt"}
    )


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"sub": "\u0663"}, id="arabic-indic-digit"),
        pytest.param({"sub": "\u00b2"}, id="superscript-digit"),
        pytest.param({"sub": "9" * 30}, id="subject-too-long"),
        pytest.param({"exp": 1e300}, id="float-expiry"),
        pytest.param({"exp": 10**40}, id="huge-expiry"),
        pytest.param({"exp": NOW + 3600}, id="lifetime-over-ttl"),
        pytest.param({"iat": float("nan")}, id="nan-issued-at"),
        pytest.param({"exp": float("inf")}, id="infinite-expiry"),
        pytest.param({"nbf": NOW + 3600}, id="not-yet-valid"),
        pytest.param({"sid": "not-a-session"}, id="malformed-session"),
        pytest.param({"ver": 0}, id="version-zero"),
        pytest.param({"ver": "1"}, id="version-string"),
    ],
)
def test_odd_claim_values_are_rejected(overrides):
    with pytest.raises(InvalidToken):
        verify_access_token(SETTINGS, _signed(**overrides), now=NOW)


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        pytest.param("10.0.0.9", "1.2.3.4", frozenset(), "10.0.0.9", id="no-proxy"),
        pytest.param(
            "10.0.0.9", "1.2.3.4", frozenset({"10.0.0.9"}), "1.2.3.4", id="one-proxy"
        ),
        pytest.param(
            "10.0.0.9",
            "6.6.6.6, 1.2.3.4, 10.0.0.8",
            frozenset({"10.0.0.9", "10.0.0.8"}),
            "1.2.3.4",
            id="spoofed-left-part-ignored",
        ),
        pytest.param(
            "10.0.0.9", None, frozenset({"10.0.0.9"}), "10.0.0.9", id="no-header"
        ),
        pytest.param(
            "8.8.8.8",
            "1.2.3.4",
            frozenset({"10.0.0.9"}),
            "8.8.8.8",
            id="untrusted-peer",
        ),
    ],
)
def test_client_ip_believes_only_trusted_proxies(peer, forwarded, trusted, expected):
    from graph.context import client_ip

    assert client_ip(peer, forwarded, trusted) == expected

"""Issuing and verifying access tokens (JWT, HS256).

Verification follows RFC 8725: one allowed algorithm, required registered
claims, an explicit token type, bounded leeway, and no key material taken
from the token's own header.
"""

import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from graph.caching import LruCache

ALGORITHM = "HS256"
ASYMMETRIC_ALGORITHMS = ("EdDSA", "RS256")
# RFC 9068 media type of JWT access tokens; it keeps access tokens apart from
# any other token type the service signs with the same key.
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "jti")
# ASCII digits only (str.isdigit accepts other scripts' digits), and few
# enough to fit a 64-bit database key.
_USER_ID = re.compile(r"[0-9]{1,18}")
_SESSION_ID = re.compile(r"[0-9a-f]{32}")
# Headers that point at keys chosen by the token's creator.
FORBIDDEN_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c"})


@dataclass(frozen=True, slots=True)
class TokenSettings:
    """Signing and verification settings of access tokens.

    With HS256, `secret` signs and verifies. With EdDSA or RS256, the key
    named `signing_kid` in `private_keys` signs, and every key in
    `public_keys` verifies, so that keys rotate without signing anyone out.
    Each key is bound to the one algorithm of the settings.
    """

    secret: str
    issuer: str
    audience: str
    ttl_seconds: int
    leeway_seconds: int
    algorithm: str = ALGORITHM
    signing_kid: str | None = None
    private_keys: Mapping[str, Any] = field(default_factory=dict)
    public_keys: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    session_id: str
    version: int
    token_id: str
    issued_at: int
    expires_at: int


class InvalidToken(Exception):
    """The token cannot be trusted. The message gives the reason, for logs only."""


def issue_access_token(
    settings: TokenSettings,
    *,
    user_id: int,
    session_id: str,
    version: int,
    now: float | None = None,
) -> IssuedToken:
    """Sign an access token for a user's session.

    `sid` names the session, so that ending the session ends the token.
    `ver` is the user's auth version, so that a password or role change ends
    it too.
    """
    issued_at = int(now if now is not None else time.time())
    claims = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": str(user_id),
        "iat": issued_at,
        "exp": issued_at + settings.ttl_seconds,
        "jti": secrets.token_urlsafe(16),
        "sid": session_id,
        "ver": version,
    }
    if settings.algorithm == ALGORITHM:
        token = jwt.encode(
            claims,
            settings.secret,
            algorithm=ALGORITHM,
            headers={"typ": ACCESS_TOKEN_TYPE},
        )
    else:
        assert settings.signing_kid is not None
        token = jwt.encode(
            claims,
            settings.private_keys[settings.signing_kid],
            algorithm=settings.algorithm,
            headers={"typ": ACCESS_TOKEN_TYPE, "kid": settings.signing_kid},
        )
    return IssuedToken(token=token, expires_in=settings.ttl_seconds)


def verify_access_token(
    settings: TokenSettings, token: str, *, now: float | None = None
) -> AccessClaims:
    """Verify an access token and return its claims.

    Raises:
        InvalidToken: The token is malformed, forged, expired, of another type,
            or lacks a required claim.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        raise InvalidToken(f"malformed token: {error}") from error
    if header.get("alg") != settings.algorithm:
        raise InvalidToken(f"algorithm {header.get('alg')!r} is not allowed")
    key: Any = settings.secret
    if settings.algorithm != ALGORITHM:
        kid = header.get("kid")
        if not isinstance(kid, str) or kid not in settings.public_keys:
            raise InvalidToken(f"unknown key id {str(kid)[:40]!r}")
        key = settings.public_keys[kid]
    if header.get("typ") != ACCESS_TOKEN_TYPE:
        raise InvalidToken(f"token type {header.get('typ')!r} is not an access token")
    if FORBIDDEN_HEADERS & header.keys():
        raise InvalidToken("token header names its own key")

    current = now if now is not None else time.time()
    try:
        # Times are checked below against `current`, so that a caller with a
        # controlled clock gets the same rules as the wall clock.
        claims = jwt.decode(
            token,
            key,
            algorithms=[settings.algorithm],
            audience=settings.audience,
            issuer=settings.issuer,
            options={
                "require": list(REQUIRED_CLAIMS),
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.PyJWTError as error:
        raise InvalidToken(f"{type(error).__name__}: {error}") from error

    leeway = settings.leeway_seconds
    expires_at = _time_claim(claims, "exp")
    issued_at = _time_claim(claims, "iat")
    if expires_at + leeway < current:
        raise InvalidToken("token has expired")
    if issued_at - leeway > current:
        raise InvalidToken("token was issued in the future")
    if expires_at - issued_at > settings.ttl_seconds:
        # Even a correctly signed token may not outlive the configured lifetime.
        raise InvalidToken("token lifetime exceeds the access token lifetime")
    if "nbf" in claims and _time_claim(claims, "nbf") - leeway > current:
        raise InvalidToken("token is not valid yet")
    subject = claims["sub"]
    if not isinstance(subject, str) or not _USER_ID.fullmatch(subject):
        raise InvalidToken("subject is not a user id")
    session_id = claims.get("sid")
    if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
        raise InvalidToken("session id is missing or malformed")
    version = claims.get("ver")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidToken("auth version is missing or malformed")
    return AccessClaims(
        user_id=int(subject),
        session_id=session_id,
        version=version,
        token_id=str(claims["jti"]),
        issued_at=issued_at,
        expires_at=expires_at,
    )


def _time_claim(claims: dict[str, object], name: str) -> int:
    """Return a NumericDate claim, which must be a whole number within 64 bits."""
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidToken(f"claim {name!r} is not a whole number of seconds")
    if not 0 <= value < 2**63:
        raise InvalidToken(f"claim {name!r} is out of range")
    return value


def public_jwks(settings: TokenSettings) -> dict[str, list[dict[str, Any]]]:
    """Return the verification keys as a JWK Set (RFC 7517); empty for HS256."""
    keys = []
    for kid, public_key in settings.public_keys.items():
        algorithm = jwt.get_algorithm_by_name(settings.algorithm)
        jwk = algorithm.to_jwk(public_key, as_dict=True)
        jwk.pop("key_ops", None)  # RFC 7517: not together with "use"
        jwk.update(kid=kid, alg=settings.algorithm, use="sig")
        keys.append(jwk)
    return {"keys": keys}


class VerifiedTokens:
    """Access tokens whose signature and claims were already checked.

    A signature check costs 60 to 120 microseconds here (docs/benchmarks.md),
    paid again on every request that carries the same token. The signature
    cannot change, so entries keep the claims; the time checks run on every
    use.
    """

    def __init__(self, settings: TokenSettings, max_entries: int = 10_000) -> None:
        self.settings = settings
        self._entries: LruCache[str, AccessClaims] = LruCache(max_entries)

    def verify(self, token: str, *, now: float) -> AccessClaims:
        """Verify `token` as `verify_access_token` does, once per token.

        Raises:
            InvalidToken: As `verify_access_token`.
        """
        claims = self._entries.get(token)
        if claims is None:
            claims = verify_access_token(self.settings, token, now=now)
            self._entries.put(token, claims)
            return claims
        leeway = self.settings.leeway_seconds
        if claims.expires_at + leeway < now:
            self._entries.discard(token)
            raise InvalidToken("token has expired")
        if claims.issued_at - leeway > now:
            raise InvalidToken("token was issued in the future")
        return claims

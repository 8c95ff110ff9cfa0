"""Access tokens signed with EdDSA or RS256 keys, rotated by key id and
published as a JWK Set."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tests.support import (
    RunningService,
    run_cli,
    service_env,
    start_service,
    stop_server,
    strong_password,
)

ME = "{ me { username } }"


def _write_key(path: Path, key) -> None:  # type: ignore[no-untyped-def]
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture(scope="module", params=["EdDSA", "RS256"])
def signed(
    request, model_dir, tmp_path_factory
) -> Iterator[tuple[RunningService, dict]]:
    algorithm = request.param
    data_dir = tmp_path_factory.mktemp(f"keys-{algorithm}")
    make = (
        ed25519.Ed25519PrivateKey.generate
        if algorithm == "EdDSA"
        else lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    keys = {"new": make(), "old": make()}
    for kid, key in keys.items():
        _write_key(data_dir / f"{kid}.pem", key)
    admin_password = strong_password()
    env = service_env(
        database_url=f"sqlite:///{data_dir / 'keys.db'}",
        model_dir=model_dir,
        data_dir=data_dir,
        FIELDGUARD_JWT_ALGORITHM=algorithm,
        FIELDGUARD_JWT_PRIVATE_KEYS=(
            f"new:{data_dir / 'new.pem'},old:{data_dir / 'old.pem'}"
        ),
    )
    env.pop("FIELDGUARD_JWT_SECRET")
    assert (
        run_cli({**env, "FIELDGUARD_ADMIN_PASSWORD": admin_password}, "init").returncode
        == 0
    )
    service = start_service(env, data_dir / "server.log", admin_password)
    process = service.process
    try:
        yield service, {"algorithm": algorithm, "keys": keys}
    finally:
        stop_server(process)


def _jwks(service: RunningService) -> dict:
    return httpx.get(
        service.url.replace("/graphql", "/.well-known/jwks.json"), timeout=30
    ).json()


def test_other_services_verify_with_the_jwks(signed):
    service, setup = signed
    token = service.login("admin")
    header = jwt.get_unverified_header(token)
    jwk_set = jwt.PyJWKSet.from_dict(_jwks(service))

    key = jwk_set[header["kid"]]
    claims = jwt.decode(
        token,
        key=key,
        algorithms=[setup["algorithm"]],
        audience="fieldguard",
        issuer="fieldguard",
    )

    assert header["alg"] == setup["algorithm"]
    assert header["kid"] == "new"
    assert claims["sub"] == "1"
    assert {k["kid"] for k in _jwks(service)["keys"]} == {"new", "old"}
    assert all("d" not in k for k in _jwks(service)["keys"])  # no private parts


def test_token_of_the_previous_key_still_verifies(signed):
    service, setup = signed
    real = jwt.decode(service.login("admin"), options={"verify_signature": False})
    token = jwt.encode(
        real,
        setup["keys"]["old"],
        algorithm=setup["algorithm"],
        headers={"typ": "at+jwt", "kid": "old"},
    )
    assert service.execute(ME, token=token).errors == []


def test_hs256_signed_with_the_public_key_is_refused(signed):
    service, setup = signed
    real = jwt.decode(service.login("admin"), options={"verify_signature": False})
    public_pem = (
        setup["keys"]["new"]
        .public_key()
        .public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    # PyJWT refuses to use a PEM key as an HMAC secret, so sign by hand.
    import base64
    import hashlib
    import hmac
    import json

    def part(value: dict) -> str:
        return (
            base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
        )

    signing_input = (
        f"{part({'alg': 'HS256', 'typ': 'at+jwt', 'kid': 'new'})}.{part(real)}"
    )
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = (
        f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    )

    assert service.execute(ME, token=token).codes() == ["UNAUTHENTICATED"]


@pytest.mark.parametrize("kid", [None, "unknown", "../etc/passwd"])
def test_missing_or_unknown_key_id_is_refused(signed, kid):
    service, setup = signed
    real = jwt.decode(service.login("admin"), options={"verify_signature": False})
    headers = {"typ": "at+jwt"} | ({"kid": kid} if kid else {})
    token = jwt.encode(
        real, setup["keys"]["new"], algorithm=setup["algorithm"], headers=headers
    )
    assert service.execute(ME, token=token).codes() == ["UNAUTHENTICATED"]


def test_hs256_service_publishes_no_keys(service: RunningService):
    assert _jwks(service) == {"keys": []}

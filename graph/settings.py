"""Settings, read from `FIELDGUARD_*` environment variables.

This is the one module that reads the environment; everything else receives
values from a `Settings` instance.
"""

import base64
import json
import logging
import os
import secrets
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schema.crypto import DataKeys, new_key, parse_key_list

logger = logging.getLogger(__name__)

MIN_SECRET_BYTES = 32


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class SettingsError(RuntimeError):
    """The settings do not allow the service to start. The message gives the reason."""


class Settings(BaseSettings):
    """Service settings; each field reads `FIELDGUARD_<NAME>` from the environment."""

    model_config = SettingsConfigDict(
        env_prefix="FIELDGUARD_", frozen=True, case_sensitive=False
    )

    env: Environment = Environment.DEVELOPMENT
    data_dir: Path = Path("data")
    database_url: str = ""
    database_pool_size: Annotated[int, Field(ge=1, le=100)] = 5
    model_dir: Path | None = None

    data_keys: SecretStr | None = None
    data_index_key: SecretStr | None = None
    max_page_size: Annotated[int, Field(ge=1, le=1000)] = 100
    max_batch_rows: Annotated[int, Field(ge=1, le=10_000)] = 1000
    predict_rows_per_minute: Annotated[int, Field(ge=1, le=10_000_000)] = 60_000
    # Store prediction inputs in the audit log; off, because they may be
    # personal data.
    audit_prediction_inputs: bool = False

    jwt_secret: SecretStr | None = None
    jwt_algorithm: Literal["HS256", "EdDSA", "RS256"] = "HS256"
    # For EdDSA and RS256: `kid:path/to/private.pem,...`; the first signs,
    # all verify.
    jwt_private_keys: str | None = None
    jwt_issuer: str = "fieldguard"
    jwt_audience: str = "fieldguard"
    access_token_ttl_seconds: Annotated[int, Field(ge=300, le=900)] = 900
    token_leeway_seconds: Annotated[int, Field(ge=0, le=30)] = 10

    session_idle_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 30
    session_absolute_hours: Annotated[int, Field(ge=1, le=24 * 30)] = 12
    refresh_grace_seconds: Annotated[int, Field(ge=0, le=60)] = 10

    redis_url: str | None = None
    redis_key_prefix: str = "fieldguard"
    # Comma-separated addresses of reverse proxies whose X-Forwarded-For is
    # believed; with none, the client IP is the socket's peer address.
    trusted_proxies: str = ""
    # What sign-in does when the shared counter store fails: `closed` refuses
    # sign-ins, `open` lets them through unthrottled with a logged warning.
    throttle_failure_mode: Literal["closed", "open"] = "closed"
    login_window_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 15
    login_failures_before_delay: Annotated[int, Field(ge=0, le=100)] = 3
    login_failures_to_lock: Annotated[int, Field(ge=1, le=1000)] = 10
    login_ip_failures_to_lock: Annotated[int, Field(ge=1, le=100_000)] = 100
    login_max_consecutive_failures: Annotated[int, Field(ge=1, le=100)] = 100
    # A file holding seconds to add to the clock; for tests of session expiry.
    # Refused in production.
    clock_offset_file: Path | None = None

    admin_username: str = "admin"
    admin_password: SecretStr | None = None

    password_min_length: Annotated[int, Field(ge=12, le=64)] = 12
    argon2_memory_cost_kib: Annotated[int, Field(ge=8, le=1024 * 1024)] = 19 * 1024
    argon2_time_cost: Annotated[int, Field(ge=1, le=20)] = 2
    argon2_parallelism: Annotated[int, Field(ge=1, le=16)] = 1
    max_concurrent_hashes: Annotated[int, Field(ge=1, le=64)] = 4

    graphiql: bool | None = None
    allow_get_queries: bool | None = None
    cors_origins: str = ""
    max_batch_operations: Annotated[int, Field(ge=0, le=10)] = 0
    max_query_cost: Annotated[int, Field(ge=10, le=1_000_000)] = 5000
    request_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0
    max_query_depth: Annotated[int, Field(ge=2, le=50)] = 8
    max_aliases: Annotated[int, Field(ge=1, le=1000)] = 30
    max_query_tokens: Annotated[int, Field(ge=50, le=100_000)] = 2000
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024

    # Bearer token that /metrics requires; in production /metrics is off
    # without one.
    metrics_token: SecretStr | None = None

    # One JSON object a log line; on by default in production.
    json_logs: bool | None = None

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_production_secret(self) -> "Settings":
        secret = self.jwt_secret
        if (
            secret is not None
            and len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES
        ):
            raise ValueError(
                f"FIELDGUARD_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes."
            )
        if self.env is Environment.PRODUCTION:
            if self.clock_offset_file is not None:
                raise ValueError(
                    "FIELDGUARD_CLOCK_OFFSET_FILE is for tests and cannot be set "
                    "in production."
                )
            if secret is None and self.jwt_algorithm == "HS256":
                raise ValueError(
                    "FIELDGUARD_JWT_SECRET is required when FIELDGUARD_ENV=production."
                )
            if self.jwt_algorithm != "HS256" and not self.jwt_private_keys:
                raise ValueError(
                    "FIELDGUARD_JWT_PRIVATE_KEYS is required for "
                    f"{self.jwt_algorithm} when FIELDGUARD_ENV=production."
                )
            if self.data_keys is None or self.data_index_key is None:
                raise ValueError(
                    "FIELDGUARD_DATA_KEYS and FIELDGUARD_DATA_INDEX_KEY are required "
                    "when FIELDGUARD_ENV=production."
                )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'fieldguard.db').resolve()}"

    @property
    def resolved_model_dir(self) -> Path:
        return (
            self.model_dir if self.model_dir is not None else self.data_dir / "models"
        )

    @property
    def json_logs_enabled(self) -> bool:
        return self.json_logs if self.json_logs is not None else self.is_production

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    @property
    def get_queries_enabled(self) -> bool:
        if self.allow_get_queries is not None:
            return self.allow_get_queries
        return not self.is_production

    @property
    def cors_origin_list(self) -> list[str]:
        return [
            origin.strip() for origin in self.cors_origins.split(",") if origin.strip()
        ]

    @property
    def trusted_proxy_set(self) -> frozenset[str]:
        return frozenset(
            p.strip() for p in self.trusted_proxies.split(",") if p.strip()
        )

    @property
    def graphiql_enabled(self) -> bool:
        if self.graphiql is not None:
            return self.graphiql
        return self.env is Environment.DEVELOPMENT

    @property
    def data_keys_path(self) -> Path:
        return self.data_dir / "data_keys.json"

    def load_data_keys(self) -> DataKeys:
        """Return the keys that seal personal data.

        They come from `FIELDGUARD_DATA_KEYS` (`id:base64key,...`, the first
        one active) and `FIELDGUARD_DATA_INDEX_KEY` (base64). In development
        without them, keys are generated once and kept in
        `<data_dir>/data_keys.json`, with a warning.

        Raises:
            SettingsError: The keys are missing in production, or malformed.
        """
        try:
            if self.data_keys is not None and self.data_index_key is not None:
                keys, active = parse_key_list(self.data_keys.get_secret_value())
                index = base64.b64decode(
                    self.data_index_key.get_secret_value(), validate=True
                )
                return DataKeys(keys=keys, active_key_id=active, index_key=index)
            if self.env is Environment.PRODUCTION:
                raise SettingsError(
                    "FIELDGUARD_DATA_KEYS and FIELDGUARD_DATA_INDEX_KEY are required "
                    "in production."
                )
            path = self.data_keys_path
            if not path.exists():
                _create_secret_file(path, _new_data_keys_file())
                logger.warning(
                    "FIELDGUARD_DATA_KEYS is not set: using development data keys "
                    "kept in %s. Set FIELDGUARD_DATA_KEYS and "
                    "FIELDGUARD_DATA_INDEX_KEY in production.",
                    path,
                )
            return read_data_keys_file(path)
        except ValueError as error:
            raise SettingsError(f"Invalid data keys: {error}") from error

    def load_private_keys(self) -> dict[str, Any]:
        """Return the JWT signing keys by key id, the signing one first.

        In development without `FIELDGUARD_JWT_PRIVATE_KEYS`, one key is
        generated and kept in `<data_dir>/jwt_<algorithm>.pem`.

        Raises:
            SettingsError: A key file is missing or not a private key of the
                configured algorithm.
        """
        if self.jwt_private_keys:
            entries = [e.strip() for e in self.jwt_private_keys.split(",") if e.strip()]
        elif self.is_production:
            raise SettingsError(
                "FIELDGUARD_JWT_PRIVATE_KEYS is required in production."
            )
        else:
            path = self.data_dir / f"jwt_{self.jwt_algorithm.lower()}.pem"
            if not path.exists():
                _create_secret_file(path, _new_private_key_pem(self.jwt_algorithm))
            entries = [f"dev:{path}"]
        keys: dict[str, Any] = {}
        for entry in entries:
            kid, separator, location = entry.partition(":")
            if not separator or not kid:
                raise SettingsError(
                    "FIELDGUARD_JWT_PRIVATE_KEYS entries must read kid:path."
                )
            keys[kid] = _read_private_key(Path(location), self.jwt_algorithm)
        return keys

    def signing_secret(self) -> str:
        """Return the JWT signing secret.

        In development without `FIELDGUARD_JWT_SECRET`, a random secret is
        generated once and kept in `<data_dir>/jwt_secret`, so that tokens
        survive a restart and several workers agree on it.
        """
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        if self.env is Environment.PRODUCTION:
            raise SettingsError("FIELDGUARD_JWT_SECRET is required in production.")
        path = self.data_dir / "jwt_secret"
        if not path.exists():
            _create_secret_file(path)
            logger.warning(
                "FIELDGUARD_JWT_SECRET is not set: using a development secret "
                "kept in %s. Set FIELDGUARD_JWT_SECRET in production.",
                path,
            )
        secret = path.read_text(encoding="ascii").strip()
        if len(secret) < MIN_SECRET_BYTES:
            raise SettingsError(
                f"The development secret in {path} is shorter than "
                f"{MIN_SECRET_BYTES} bytes; delete the file to generate a new one."
            )
        return secret


def _create_secret_file(path: Path, content: str | None = None) -> None:
    """Write a random secret to `path` unless another process got there first.

    The secret is written to a private temporary file and hard-linked into
    place, so a concurrent reader sees either no file or the whole secret.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(content if content is not None else secrets.token_urlsafe(48))
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()


def _new_data_keys_file() -> str:
    key_id = "k" + secrets.token_hex(4)
    return json.dumps(
        {
            "active": key_id,
            "keys": {key_id: base64.b64encode(new_key()).decode()},
            "index": base64.b64encode(secrets.token_bytes(32)).decode(),
        },
        indent=2,
    )


def read_data_keys_file(path: Path) -> DataKeys:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return DataKeys(
        keys={k: base64.b64decode(v, validate=True) for k, v in raw["keys"].items()},
        active_key_id=raw["active"],
        index_key=base64.b64decode(raw["index"], validate=True),
    )


def add_data_key_to_file(path: Path) -> str:
    """Add a new active key to a development keys file and return its id.

    The file is replaced atomically, so running workers that reload it see
    either the old or the new key set.
    """
    raw = json.loads(path.read_text(encoding="utf-8"))
    key_id = "k" + secrets.token_hex(4)
    raw["keys"][key_id] = base64.b64encode(new_key()).decode()
    raw["active"] = key_id
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(json.dumps(raw, indent=2))
    os.replace(temporary, path)
    return key_id


def _new_private_key_pem(algorithm: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    key = (
        ed25519.Ed25519PrivateKey.generate()
        if algorithm == "EdDSA"
        else rsa.generate_private_key(public_exponent=65537, key_size=3072)
    )
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _read_private_key(path: Path, algorithm: str) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise SettingsError(
            f"Cannot read the JWT private key {path}: {error}"
        ) from error
    expected = ed25519.Ed25519PrivateKey if algorithm == "EdDSA" else rsa.RSAPrivateKey
    if not isinstance(key, expected):
        raise SettingsError(f"The JWT key {path} is not a {algorithm} private key.")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
        raise SettingsError(f"The RSA key {path} has fewer than 2048 bits.")
    return key

"""Encryption of personal data at rest, and keyed hashes for lookups.

Values are sealed with AES-256-GCM under the active data key. Each sealed
value starts with the id of its key, so that keys can rotate: every known key
decrypts, only the active one encrypts, and `reseal` moves a value to the
active key. The table and column a value belongs to are bound to it as
associated data, so a ciphertext copied into another column fails to decrypt.

Exact lookups (an email address) use an HMAC-SHA256 of the normalized value
under a separate index key, which does not rotate with the data keys.
"""

import base64
import hashlib
import hmac
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12


class DecryptionFailed(Exception):
    """A sealed value is malformed, was sealed under an unknown key, or was altered."""


@dataclass(frozen=True)
class DataKeys:
    """The data keys by id, the id of the active one, and the index key."""

    keys: Mapping[str, bytes]
    active_key_id: str
    index_key: bytes

    def __post_init__(self) -> None:
        if self.active_key_id not in self.keys:
            raise ValueError(f"active data key {self.active_key_id!r} is not defined")
        for key_id, key in self.keys.items():
            if len(key) != KEY_BYTES or ":" in key_id or not key_id:
                raise ValueError(
                    f"data key {key_id!r} must have a non-empty id without ':' "
                    f"and {KEY_BYTES} bytes"
                )
        if len(self.index_key) < KEY_BYTES:
            raise ValueError(f"the index key must have at least {KEY_BYTES} bytes")


def parse_key_list(text: str) -> tuple[dict[str, bytes], str]:
    """Parse `id:base64key,id:base64key`; the first entry is the active key."""
    keys: dict[str, bytes] = {}
    active = ""
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        key_id, separator, encoded = entry.partition(":")
        if not separator:
            raise ValueError("each data key must be written as id:base64key")
        try:
            keys[key_id] = base64.b64decode(encoded, validate=True)
        except ValueError as error:
            raise ValueError(f"data key {key_id!r} is not valid base64") from error
        active = active or key_id
    if not keys:
        raise ValueError("no data key given")
    return keys, active


def format_key_list(keys: Mapping[str, bytes], active_key_id: str) -> str:
    ordered = [active_key_id, *(k for k in keys if k != active_key_id)]
    return ",".join(f"{k}:{base64.b64encode(keys[k]).decode()}" for k in ordered)


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


class DataCipher:
    """Seals and opens column values with the data keys.

    Args:
        keys: The keys in use.
        reload: Called once when a value names a key that is not known yet,
            for instance after another process rotated the keys; it returns
            the current keys.
    """

    def __init__(
        self, keys: DataKeys, *, reload: Callable[[], DataKeys] | None = None
    ) -> None:
        self._reload = reload
        self._use(keys)

    def _use(self, keys: DataKeys) -> None:
        self.keys = keys
        self._aeads = {key_id: AESGCM(key) for key_id, key in keys.keys.items()}

    @property
    def active_key_id(self) -> str:
        return self.keys.active_key_id

    def seal(self, plaintext: str, *, context: str) -> str:
        """Encrypt `plaintext` for the column named by `context` (`table.column`)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aeads[self.active_key_id].encrypt(
            nonce, plaintext.encode("utf-8"), context.encode("ascii")
        )
        encoded = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
        return f"{self.active_key_id}:{encoded}"

    def open(self, sealed: str, *, context: str) -> str:
        key_id, separator, encoded = sealed.partition(":")
        if separator and key_id not in self._aeads and self._reload is not None:
            self._use(self._reload())
        aead = self._aeads.get(key_id)
        if not separator or aead is None:
            raise DecryptionFailed(f"value sealed under unknown key {key_id!r}")
        try:
            raw = base64.urlsafe_b64decode(encoded.encode("ascii"))
            plaintext = aead.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode("ascii")
            )
        except (ValueError, InvalidTag) as error:
            raise DecryptionFailed(f"value under key {key_id!r} is corrupt") from error
        return plaintext.decode("utf-8")

    def seal_optional(self, plaintext: str | None, *, context: str) -> str | None:
        return None if plaintext is None else self.seal(plaintext, context=context)

    def open_optional(self, sealed: str | None, *, context: str) -> str | None:
        return None if sealed is None else self.open(sealed, context=context)

    def is_current(self, sealed: str | None) -> bool:
        """Tell whether a value is absent or sealed under the active key."""
        return sealed is None or sealed.startswith(f"{self.active_key_id}:")

    def reseal(self, sealed: str | None, *, context: str) -> str | None:
        """Return the value sealed under the active key."""
        if self.is_current(sealed):
            return sealed
        return self.seal(self.open(sealed, context=context), context=context)

    def index(self, value: str, *, context: str) -> str:
        """Return the keyed hash used to find and deduplicate `value` exactly."""
        digest = hmac.new(
            self.keys.index_key,
            context.encode("ascii") + b"\x00" + value.encode("utf-8"),
            hashlib.sha256,
        )
        return digest.hexdigest()

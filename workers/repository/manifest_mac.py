"""Manifest MACs: proof that a manifest was written by a holder of the fleet's keys.

Every manifest written while a key is at hand carries

    "mac": {"alg": "hmac-sha256", "key_id": "<16 hex digits>", "value": "<64 hex digits>"}

an HMAC-SHA256 over the manifest's canonical JSON (every other field, keys
sorted, no whitespace, ASCII). The MAC key is derived with HKDF-SHA256 (RFC 5869)
from BACKUP_SIGNING_KEY when set (comma-separated: the first signs, the others
still verify, for a rotation), else from BACKUP_ENCRYPTION_KEY; manifests signed
with BACKUP_ENCRYPTION_OLD_KEYS still verify. The key id is an HMAC of a
fixed label under the derived key: it names the key without revealing it.
Readers that predate the field ignore it (the manifest allows extra fields).

HKDF is two HMACs (`hkdf_sha256`), so the standard library does it: the
`cryptography` package would add ~6 MiB to every worker process for them.
"""

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from workers.settings import Settings

MAC_FIELD = "mac"
ALGORITHM = "hmac-sha256"
_SALT = b"backfleet manifest mac v1"
_INFO = b"manifest hmac-sha256 key"
_HASH_BYTES = hashlib.sha256().digest_size


def hkdf_sha256(material: bytes, *, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869): extract a pseudorandom key, expand it to `length` bytes."""
    if not 0 < length <= 255 * _HASH_BYTES:
        raise ValueError(f"HKDF-SHA256 makes 1 to {255 * _HASH_BYTES} bytes, not {length}")
    prk = hmac.new(salt or bytes(_HASH_BYTES), material, hashlib.sha256).digest()
    okm, block = b"", b""
    for counter in range(1, -(-length // _HASH_BYTES) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


@dataclass(frozen=True)
class MacKey:
    key_id: str
    secret: bytes = field(repr=False)

    @classmethod
    def derive(cls, material: str) -> "MacKey":
        secret = hkdf_sha256(material.strip().encode(), salt=_SALT, info=_INFO, length=32)
        key_id = hmac.new(secret, b"backfleet key id", hashlib.sha256).hexdigest()[:16]
        return cls(key_id=key_id, secret=secret)


@dataclass(frozen=True)
class MacKeys:
    current: MacKey | None  # signs what this fleet writes
    all_keys: dict[str, MacKey]  # key id -> key: what this fleet accepts

    @classmethod
    def from_settings(cls, settings: Settings) -> "MacKeys":
        materials: list[str] = []
        for secret in (
            settings.backup_signing_key,  # comma-separated: the first signs, all verify
            settings.backup_encryption_key,
            settings.backup_encryption_old_keys,
        ):
            if secret is not None:
                materials.extend(t for t in secret.get_secret_value().split(",") if t.strip())
        keys = [MacKey.derive(material) for material in materials]
        return cls(current=keys[0] if keys else None, all_keys={k.key_id: k for k in keys})


def canonical(document: dict[str, Any]) -> bytes:
    """The signed bytes: every field but the MAC, in one fixed serialisation."""
    unsigned = {name: value for name, value in document.items() if name != MAC_FIELD}
    return json.dumps(
        unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def sign(document: dict[str, Any], key: MacKey) -> dict[str, Any]:
    """The document with its `mac` field (any earlier MAC replaced)."""
    value = hmac.new(key.secret, canonical(document), hashlib.sha256).hexdigest()
    return {**document, MAC_FIELD: {"alg": ALGORITHM, "key_id": key.key_id, "value": value}}


def verify(document: dict[str, Any], keys: MacKeys) -> bool:
    """True only if the document carries a MAC that one of `keys` made over it."""
    mac = document.get(MAC_FIELD)
    if not isinstance(mac, dict) or mac.get("alg") != ALGORITHM:
        return False
    key = keys.all_keys.get(str(mac.get("key_id")))
    value = mac.get("value")
    if key is None or not isinstance(value, str):
        return False
    expected = hmac.new(key.secret, canonical(document), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, value)

"""Client-side encryption in the age format (age-encryption.org/v1), via pyrage.

age is a documented, standard streaming AEAD: ChaCha20-Poly1305 in 64 KiB
chunks, the last one marked, so truncation and any changed byte are caught.
An artifact can also be decrypted without Backfleet, by `age -d -i key.txt`.

BACKUP_ENCRYPTION_KEY holds one X25519 identity (`AGE-SECRET-KEY-1…`, from
`backfleet keygen`); BACKUP_ENCRYPTION_OLD_KEYS holds earlier ones, comma
separated, so old backups still restore after a rotation. The manifest names
the key by its id: the first 16 hex digits of the SHA-256 of its public
recipient, which says nothing about the secret.
"""

import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

import pyrage
from pyrage import x25519

from workers.errors import ConfigError, IntegrityError
from workers.settings import Settings

SCHEME = "age-x25519"
_PIPE_BUFFER = 1024 * 1024


def generate_key() -> str:
    """A new identity in the documented format: `AGE-SECRET-KEY-1…`."""
    return str(x25519.Identity.generate())


def public_details(key: str) -> tuple[str, str]:
    """(key id, public recipient) of a key, both safe to show."""
    identity = _parse(key, "the key")
    return key_id(identity), str(identity.to_public())


def key_id(identity: Any) -> str:
    return hashlib.sha256(str(identity.to_public()).encode()).hexdigest()[:16]


def _parse(text: str, variable: str) -> Any:
    try:
        return x25519.Identity.from_str(text.strip())
    except Exception:
        raise ConfigError(
            f"{variable} is not an age identity (AGE-SECRET-KEY-1…; `backfleet keygen` makes one)"
        ) from None


@dataclass(frozen=True)
class Keyring:
    current: Any | None  # the identity new backups are encrypted to
    all_keys: dict[str, Any]  # key id -> identity, current and old

    @classmethod
    def from_settings(cls, settings: Settings) -> "Keyring":
        current = None
        keys: dict[str, Any] = {}
        if settings.backup_encryption_key is not None:
            current = _parse(
                settings.backup_encryption_key.get_secret_value(), "BACKUP_ENCRYPTION_KEY"
            )
            keys[key_id(current)] = current
        if settings.backup_encryption_old_keys is not None:
            for text in settings.backup_encryption_old_keys.get_secret_value().split(","):
                if text.strip():
                    old = _parse(text, "BACKUP_ENCRYPTION_OLD_KEYS")
                    keys.setdefault(key_id(old), old)
        return cls(current=current, all_keys=keys)

    def describe_current(self) -> dict[str, str] | None:
        """The manifest's `encryption` field for new artifacts (None: not encrypted)."""
        if self.current is None:
            return None
        return {"scheme": SCHEME, "key_id": key_id(self.current)}

    def identity_for(self, encryption: dict[str, Any]) -> Any:
        if encryption.get("scheme") != SCHEME:
            raise ConfigError(f"unknown encryption scheme {encryption.get('scheme')!r}")
        wanted = str(encryption.get("key_id"))
        if wanted not in self.all_keys:
            raise ConfigError(
                f"the backup was encrypted with key {wanted}, which is neither "
                "BACKUP_ENCRYPTION_KEY nor in BACKUP_ENCRYPTION_OLD_KEYS"
            )
        return self.all_keys[wanted]


def encrypt(reader: IO[bytes], writer: Any, identity: Any) -> None:
    """Read `reader` to its end, writing the age-encrypted bytes to `writer`."""
    pyrage.encrypt_io(reader, writer, [identity.to_public()])


class DecryptingReader:
    """Pull-style decryption: pyrage pushes plaintext into a pipe from a thread.

    Only authenticated chunks are released; a changed, missing or added byte
    raises IntegrityError (an error of the source stream is re-raised as is).
    """

    def __init__(self, source: IO[bytes], identities: Sequence[Any]) -> None:
        read_fd, write_fd = os.pipe()
        self._reader = os.fdopen(read_fd, "rb", buffering=_PIPE_BUFFER)
        self._writer = os.fdopen(write_fd, "wb", buffering=_PIPE_BUFFER)
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(source, list(identities)), daemon=True
        )
        self._thread.start()

    def _run(self, source: IO[bytes], identities: list[Any]) -> None:
        try:
            with self._writer:
                pyrage.decrypt_io(source, self._writer, identities)
        except BrokenPipeError:
            pass  # the reader stopped early and closed its end
        except BaseException as exc:
            self._error = exc

    def read(self, size: int = -1, /) -> bytes:
        data = self._reader.read(size)
        if not data or (size > 0 and len(data) < size):
            self._thread.join()
            self._raise_if_failed()
        return data

    def _raise_if_failed(self) -> None:
        error = self._error
        if error is None:
            return
        if isinstance(error, IntegrityError) or not isinstance(error, Exception):
            raise error
        if isinstance(error, OSError | pyrage.DecryptError):
            raise IntegrityError(
                "decryption failed: the artifact was changed or truncated"
            ) from None
        raise error

    def close(self) -> None:
        self._reader.close()
        self._thread.join(timeout=30)


def describe_keys(settings: Sequence[Settings]) -> str:
    """`backfleet check`'s verdict on the keys: every encryption key parses as an age
    identity (ConfigError names the variable, never the value); the settings themselves
    already refuse a signing key that is too short."""
    said = []
    for each in settings:
        current = Keyring.from_settings(each).describe_current()
        if current is not None:
            said.append(f"encryption key {current['key_id']}")
        if each.backup_signing_key is not None:
            said.append("signing key set")
    return ", ".join(dict.fromkeys(said)) or "no encryption or signing key set (backups unsigned)"

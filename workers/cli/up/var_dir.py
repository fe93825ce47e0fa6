"""./var, `backfleet up`'s home: private, and holding the keys it generates once."""

import os
import secrets
from pathlib import Path

from workers.errors import ConfigError


def prepare_var_dir(var_dir: Path) -> Path:
    """Create (or tighten) the var directory, mode 0700; return its absolute path."""
    var_dir = var_dir.resolve()
    var_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    var_dir.chmod(0o700)
    return var_dir


def load_or_create_api_key(var_dir: Path) -> str:
    """The key kept in <var>/api-key (mode 0600), generated on first use."""
    return _load_or_create_secret(var_dir / "api-key", "API key")


def load_or_create_signing_key(var_dir: Path) -> str:
    """The manifest signing key kept in <var>/signing-key (mode 0600), generated on first use.

    Without one, manifests go unsigned and a catalog that lost its rows could
    restore its own backups only with `allowUnsigned`.
    """
    return _load_or_create_secret(var_dir / "signing-key", "signing key")


def _load_or_create_secret(path: Path, what: str) -> str:
    try:
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(32)  # URL-safe alphabet: never ':' or ','; 43 characters
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(key + "\n")
        return key
    if not key or any(char in key for char in ":, \t"):
        raise ConfigError(f"{path} does not hold a usable {what}; delete it to get a new one")
    path.chmod(0o600)
    return key

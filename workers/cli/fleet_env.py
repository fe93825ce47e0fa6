"""How a command finds its fleet: `backfleet up` writes var/fleet.env, every other command
reads it.

`backfleet up` chooses where the fleet lives (a private Redis on a port that changes at
every start, the catalog and the store under ./var, the demo services file) and writes
those settings to <var>/fleet.env (mode 0600), each line `NAME=value`, quoted so a
shell can source it too (`set -a; . var/fleet.env`). A command run from the folder
`up` runs in reads ./var/fleet.env; from anywhere else, BACKFLEET_ENV_FILE names the
file. A variable already set in the environment wins over the file, so an explicit
setting always does.

Secrets the user gave `up` through the environment (store keys, the encryption key, a
password in a URL) are not copied to disk: a second shell needs them exported too. The
keys `up` itself generated (the manifest signing key) are written, since they already
live in the same private folder.
"""

import os
import shlex
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path

from workers.errors import ConfigError
from workers.redact import url_password_forms

ENV_FILE_VARIABLE = "BACKFLEET_ENV_FILE"
FILE_NAME = "fleet.env"
# What a client needs to reach the fleet `up` runs: where its broker, catalog, store and
# services file are, and its API's port.
CLIENT_SETTINGS = (
    "BROKER_URL",
    "DATABASE_URL",
    "OBJECT_STORE_LOCATION_TYPE",
    "OBJECT_STORE_LOCATION_LOCAL",
    "BACKFLEET_CONFIG",
    "BACKFLEET_NAMESPACE",
    "BACKFLEET_API_PORT",
)


def write_fleet_env(var_dir: Path, env: Mapping[str, str], generated: Iterable[str]) -> Path:
    """Write <var>/fleet.env from the children's environment; `generated`: the names of
    secrets `up` made itself (written too). Replaced atomically, mode 0600."""
    lines = [
        "# Written by `backfleet up`: where this fleet lives. Commands run in this folder",
        f"# read it; from elsewhere, set {ENV_FILE_VARIABLE} to this file's path.",
    ]
    for name in (*CLIENT_SETTINGS, *generated):
        value = env.get(name)
        if not value:
            continue
        if url_password_forms(value):  # a password the user gave: not copied to disk
            lines.append(f"# {name} holds a password: export it in each shell")
            continue
        lines.append(f"{name}={shlex.quote(value)}")
    path = var_dir / FILE_NAME
    staging = path.with_name(f".{FILE_NAME}.new")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
    os.replace(staging, path)
    return path


def load_fleet_env(environ: MutableMapping[str, str], cwd: Path) -> Path | None:
    """Fill `environ` from BACKFLEET_ENV_FILE, else ./var/fleet.env if there is one, for
    the names it does not set already; the file read, or None."""
    named = environ.get(ENV_FILE_VARIABLE)
    path = Path(named) if named else cwd / "var" / FILE_NAME
    if not path.is_file():
        if named:
            raise ConfigError(
                f"{ENV_FILE_VARIABLE} names {path}, which does not exist (`backfleet up` "
                "writes var/fleet.env in the folder it runs in)"
            )
        return None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, raw = line.partition("=")
        try:
            words = shlex.split(raw)
        except ValueError:  # an unterminated quote
            words = ["", ""]
        if not sep or not name.isidentifier() or len(words) > 1:
            raise ConfigError(f"{path}, line {number}: not NAME=value")
        environ.setdefault(name, words[0] if words else "")
    return path

"""How a command finds its fleet: `backfleet up` writes var/fleet.env, every other command
reads it.

`backfleet up` chooses where the fleet lives (a private Redis on a port that changes at
every start, the catalog and the store under ./var, the demo services file) and writes
those settings to <var>/fleet.env (mode 0600), each line `NAME=value`, quoted so a
shell can source it too (`set -a; . var/fleet.env`). A command run from the folder
`up` runs in reads ./var/fleet.env; from anywhere else, BACKFLEET_ENV_FILE names the
file. A variable already set in the environment wins over the file, so an explicit
setting always does.

Secrets the user gave `up` through the environment (a password in a URL) are not copied
to disk: the file names them (`#need NAME`) and a command refuses to run until the shell
sets them, rather than fall back to a default that may be another fleet's. The keys `up`
itself generated (the manifest signing key) are written, since they already live in the
same private folder. Store keys and the encryption key are not client settings: a shell
that needs them exports them.
"""

import os
import shlex
import stat
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from workers.errors import ConfigError
from workers.redact import redact

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


# Secrets `up` may generate and write (they live in the same private folder already).
GENERATED = ("BACKUP_SIGNING_KEY",)
# Other names for a client setting: set in the environment, they count as it.
ALIASES = {"BROKER_URL": ("REDIS_URL",)}
NEED = "#need "  # a setting withheld from the file (it holds a secret): the shell must set it
UP_PID = "#up-pid "  # the `backfleet up` that wrote it: an error can say it has stopped


@dataclass(frozen=True)
class LoadedFile:
    path: Path
    up_pid: int | None


loaded: LoadedFile | None = None  # the file this process read its fleet from, if any


def write_fleet_env(
    var_dir: Path, env: Mapping[str, str], generated: Iterable[str], *, up_pid: int | None = None
) -> Path:
    """Write <var>/fleet.env from the children's environment; `generated`: the names of
    secrets `up` made itself (written too); `up_pid`: the writer's process. Replaced
    atomically, mode 0600."""
    lines = [
        "# Written by `backfleet up`: where this fleet lives. Commands run in this folder",
        f"# read it; from elsewhere, set {ENV_FILE_VARIABLE} to this file's path.",
    ]
    if up_pid is not None:
        lines.append(f"{UP_PID}{up_pid}")
    made = set(generated) & set(GENERATED)
    for name in (*CLIENT_SETTINGS, *sorted(made)):
        value = env.get(name)
        if not value:
            continue
        if name not in made and redact(value) != value:  # a secret the user gave: not on disk
            lines.append(f"# {name} holds a secret: export it in each shell")
            lines.append(f"{NEED}{name}")
            continue
        lines.append(f"{name}={shlex.quote(value)}")
    path = var_dir / FILE_NAME
    staging = path.with_name(f".{FILE_NAME}.new")
    staging.unlink(missing_ok=True)  # a leftover keeps its own mode and owner: never reuse it
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(staging, path)
    return path


def load_fleet_env(
    environ: MutableMapping[str, str], cwd: Path, *, say: Callable[[str], None] = print
) -> Path | None:
    """Fill `environ` from BACKFLEET_ENV_FILE, else ./var/fleet.env if there is one; the
    file read, or None.

    One fleet or the other, never a mix: a file found in ./var is not read when the
    environment already sets one of its settings (it says so); a file named by
    BACKFLEET_ENV_FILE is refused then. Only the client settings and the secrets `up`
    generates are taken, from a file this user owns that nobody else may write.
    """
    named = environ.get(ENV_FILE_VARIABLE)
    path = Path(named) if named else cwd / "var" / FILE_NAME
    if not path.is_file():
        if named:
            raise ConfigError(
                f"{ENV_FILE_VARIABLE} names {path}, which does not exist (`backfleet up` "
                "writes var/fleet.env in the folder it runs in)"
            )
        return None
    _check_owner(path)
    values, needed, up_pid = _parse(path)
    clash = sorted(
        name
        for name in values
        for given in (name, *ALIASES.get(name, ()))
        if given in environ and name not in needed
    )
    if clash:
        if named:
            raise ConfigError(
                f"{ENV_FILE_VARIABLE} names {path}, but the environment sets "
                f"{', '.join(clash)} too: unset one or the other (one fleet, not a mix)"
            )
        say(f"note: not reading {path}: {', '.join(clash)} is set in the environment")
        return None
    missing = sorted(name for name in needed if name not in environ)
    if missing:
        raise ConfigError(
            f"{path} leaves out {', '.join(missing)} (it holds a secret): export it in this "
            "shell too"
        )
    for name, value in values.items():
        environ.setdefault(name, value)
    global loaded
    loaded = LoadedFile(path, up_pid)
    return path


def stopped_up_hint() -> str:
    """Why the broker may not answer: the `backfleet up` that wrote the fleet file read by
    this command is no longer running (its embedded Redis went with it); else ""."""
    if loaded is None or loaded.up_pid is None or _alive(loaded.up_pid):
        return ""
    return (
        f"; {loaded.path} was written by `backfleet up` (pid {loaded.up_pid}), which is no "
        "longer running: start it again (`make up`)"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process of that number
    return True


def _check_owner(path: Path) -> None:
    """A settings file anyone else could have written is no settings file."""
    info = path.stat()
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"{path} is not this user's own or others may write it: it is not read "
            "(chmod 600 it, or remove it and run `backfleet up` again)"
        )


def _parse(path: Path) -> tuple[dict[str, str], set[str], int | None]:
    allowed = {*CLIENT_SETTINGS, *GENERATED}
    values: dict[str, str] = {}
    needed: set[str] = set()
    up_pid: int | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith(NEED):
            needed.add(line.removeprefix(NEED).strip())
            continue
        if line.startswith(UP_PID):
            number_text = line.removeprefix(UP_PID).strip()
            up_pid = int(number_text) if number_text.isascii() and number_text.isdigit() else None
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, raw = line.partition("=")
        try:
            words = shlex.split(raw)
        except ValueError:  # an unterminated quote
            words = ["", ""]
        if not sep or not name.isidentifier() or len(words) > 1:
            raise ConfigError(f"{path}, line {number}: not NAME=value")
        if name not in allowed:
            raise ConfigError(
                f"{path}, line {number}: {name} is not a setting this file may hold "
                f"(only {', '.join(sorted(allowed))})"
            )
        values[name] = words[0] if words else ""
    return values, needed, up_pid

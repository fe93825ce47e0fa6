"""Where PostgreSQL's server programs are: a restore of a base backup starts `postgres` on it.

The server must be of the backup's major version (a data directory is not portable
across majors). It is looked for on the worker's PATH, then where Debian's
`postgresql-<major>` package puts it (/usr/lib/postgresql/<major>/bin), which is not
on the PATH of a plain Debian system. The image installs that package.
"""

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from workers.errors import ConfigError

# Debian's (and the PostgreSQL project's apt repository's) versioned folders.
DEBIAN_LIBDIR = Path("/usr/lib/postgresql")
_VERSION = re.compile(rb"\(PostgreSQL\)\s+(\d+)")
_VERSION_TIMEOUT = 10.0


@dataclass(frozen=True)
class ServerPrograms:
    """`postgres` of one major version, and the `pg_dump` beside it when there is one."""

    major: int
    postgres: Path
    pg_dump: Path | None


def major_of(program: Path) -> int | None:
    """The major version `program --version` reports, None when it cannot say."""
    try:
        done = subprocess.run(
            [str(program), "--version"],
            capture_output=True,
            timeout=_VERSION_TIMEOUT,
            check=False,
            env={},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = _VERSION.search(done.stdout)
    return int(found.group(1)) if found else None


def _candidates() -> list[Path]:
    folders: list[Path] = []
    if on_path := shutil.which("postgres"):
        folders.append(Path(on_path).resolve().parent)
    if DEBIAN_LIBDIR.is_dir():
        folders += sorted(DEBIAN_LIBDIR.glob("*/bin"), reverse=True)
    return folders


def server_programs(major: int) -> ServerPrograms:
    """The server programs of PostgreSQL `major`; ConfigError saying what to install if none."""
    found: list[str] = []
    for folder in _candidates():
        postgres = folder / "postgres"
        if not postgres.is_file():
            continue
        version = major_of(postgres)
        if version == major:
            pg_dump = folder / "pg_dump"
            return ServerPrograms(major, postgres, pg_dump if pg_dump.is_file() else None)
        found.append(f"{postgres} is PostgreSQL {version or '?'}")
    others = f" ({'; '.join(found)})" if found else ""
    raise ConfigError(
        f"the PostgreSQL {major} server (the `postgres` program) is not installed on this "
        f"worker{others}: a base backup of PostgreSQL {major} is restored through a scratch "
        f"server of the same major version. Install the server package (Debian: "
        f"postgresql-{major}; the Backfleet image has it for its PG_MAJOR) or put its bin "
        "folder on the worker's PATH"
    )

"""The environment of every tool the fleet starts: what the tool needs, nothing else.

A worker's environment holds the fleet's secrets (store keys, the encryption
key, API keys, broker and catalog URLs). A dump tool, psql or redis-server gets
only PATH, HOME, LANG and TZ (whichever are set), the variables its service
names, and its own password.
"""

import os
import re
from collections.abc import Iterable, Mapping

BASE_VARIABLES = ("PATH", "HOME", "LANG", "TZ")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def child_env(
    names: Iterable[str] = (),
    *,
    prefixes: Iterable[str] = (),
    extra: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """BASE_VARIABLES and `names` (those set), variables starting with a prefix, then `extra`."""
    source = os.environ if environ is None else environ
    wanted = set(BASE_VARIABLES) | set(names)
    starts = tuple(prefixes)
    env = {
        name: value
        for name, value in source.items()
        if name in wanted or (starts and name.startswith(starts))
    }
    env.update(extra or {})
    return env


def libpq_env(password: str = "", *, names: Iterable[str] = ()) -> dict[str, str]:
    """For pg_dump, pg_restore and psql: libpq's own PG* settings and the password."""
    return child_env(names, prefixes=("PG",), extra={"PGPASSWORD": password} if password else None)

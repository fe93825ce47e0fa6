"""The environment of every tool the fleet starts: what the tool needs, nothing else.

A worker's environment holds the fleet's secrets (store keys, the encryption
key, API keys, broker and catalog URLs). A dump tool, psql or redis-server gets
only PATH, HOME, LANG and TZ (whichever are set), the variables its service
names, and its own password.
"""

import os
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

BASE_VARIABLES = ("PATH", "HOME", "LANG", "TZ")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
# Settings whose value may carry a password although they are plain strings.
_URL_SETTINGS = (
    "broker_url",
    "result_backend_url",
    "lock_redis_url",
    "database_url",
    "aws_s3_endpoint_url",
    "azure_storage_account_service_url",
)
SECONDARY_PREFIX = "SECONDARY_"  # the secondary store's settings (workers.settings)


@lru_cache(maxsize=1)
def fleet_secret_variables() -> frozenset[str]:
    """The variables holding Backfleet's own secrets (upper case): no tool is given one."""
    from pydantic import AliasChoices

    # Here: the services file is parsed without the settings (start-up cost only;
    # settings imports nothing of this module, so no cycle closes).
    from workers.settings import Settings

    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        if "SecretStr" not in str(field.annotation) and name not in _URL_SETTINGS:
            continue
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias or name]
        names.update(str(choice).upper() for choice in choices)
    return frozenset(names | {SECONDARY_PREFIX + name for name in names})


def fleet_secret_named(names: Iterable[str]) -> list[str]:
    """Those of `names` that are variables of Backfleet's own secrets (any case)."""
    secret = fleet_secret_variables()
    return [name for name in names if name.upper() in secret]


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


def tool_env(names: Iterable[str] = (), password_env: str | None = None) -> dict[str, str]:
    """For a command service's tools and any service's hooks: `names` (its `env`) and its
    `password_env`, besides BASE_VARIABLES."""
    return child_env([*names, *([password_env] if password_env else [])])


def libpq_env(password: str = "", *, names: Iterable[str] = ()) -> dict[str, str]:
    """For pg_dump, pg_restore and psql: libpq's own PG* settings and the password."""
    return child_env(names, prefixes=("PG",), extra={"PGPASSWORD": password} if password else None)

"""One service of the services file: its kind, where its data is, its tools and its policy."""

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from workers.child_env import ENV_NAME, fleet_secret_named
from workers.services_config.policy import RetentionSpec, check_duration
from workers.settings import check_growth_factor
from workers.timestamps import parse_cron, parse_duration

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
# A command service's artifact extension: <service>.<format>.zst in the store.
FORMAT_WORD = re.compile(r"^[a-z0-9]([-a-z0-9]{0,14}[a-z0-9])?\Z")
# The names restores give their staging copies and the trees they set aside
# (workers/sources/directory/swap.py, sqlite.py): `.<target>.backfleet-restore-…`, `…-old-…`.
RESTORE_LEFTOVER = re.compile(r"^\..*\.backfleet-(restore|old)-")
DEFAULT_COMMAND_FORMAT = "dump"

ServiceKind = Literal["postgres", "sqlite", "directory", "command"]
# Keys only a command service may carry.
_COMMAND_KEYS = (
    "dump_command",
    "restore_command",
    "format",
    "fail_on_stderr",
    "test_restore_command",
    "count_command",
)


def _unambiguous_userinfo(url: str) -> bool:
    """libpq ends user:password at the first '@' or '/': at most one '@', and before any '/'."""
    rest = url.split("://", 1)[1]
    if rest.count("@") > 1:
        return False
    at = rest.find("@")
    return at < 0 or not any(char in rest[:at] for char in "/?#")


def _no_fleet_secret(names: list[str]) -> None:
    found = fleet_secret_named(names)
    if found:
        raise ValueError(
            f"{', '.join(found)} holds a secret of Backfleet's own (a store, encryption or API "
            "key, or a broker or catalog URL): a service's tools are never given one"
        )


def check_dns_label(value: str, what: str) -> str:
    if not DNS_LABEL.match(value):
        raise ValueError(
            f"{what} {value!r} must be a DNS label: lower-case letters, digits and '-', "
            "1-63 characters, starting and ending with a letter or digit"
        )
    return value


def check_argv(cls: type, value: object) -> object:
    """A command as an argv list (no shell): dump_command, restore_command,
    test_restore_command, count_command, a hook's pre/post."""
    if value is None:
        return value
    if not isinstance(value, list) or not all(isinstance(arg, str) for arg in value):
        raise ValueError(
            "must be a list of strings, the program and its arguments (no shell), e.g. "
            '["mysqldump", "--databases", "app"]'
        )
    if not value or not value[0]:
        raise ValueError("must name a program to run: the list is empty")
    if any("\0" in arg for arg in value):
        raise ValueError("must not contain NUL characters")
    return value


class HooksSpec(BaseModel):
    """`[services.<name>.hooks]`: commands run around the service's dump (workers/sources/hooks.py).

    `pre` runs before the dump, and a failure fails the service's artifact; `post`
    runs after it whatever happened (a failure is a warning on the backup).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    pre: list[str] | None = None
    post: list[str] | None = None
    timeout: str | None = None  # e.g. "10m"; unset: BACKUP_HOOK_TIMEOUT

    _argv = field_validator("pre", "post", mode="before")(check_argv)

    @field_validator("timeout")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _runs_something(self) -> "HooksSpec":
        if self.pre is None and self.post is None:
            raise ValueError("a hooks table needs `pre`, `post` or both")
        return self

    def timeout_seconds(self, default: int) -> int:
        """Its own `timeout`, else `default` (BACKUP_HOOK_TIMEOUT)."""
        return parse_duration(self.timeout) if self.timeout is not None else default


# Password hashes are credentials (an md5 one logs in as is): never stored unencrypted.
ROLE_PASSWORDS_NEED_ENCRYPTION = (
    "role_passwords = true needs encrypted backups (BACKUP_ENCRYPTION_KEY): password hashes "
    "are credentials and are never stored unencrypted"
)


class ServiceSpec(BaseModel):
    """One thing to back up. `url` may hold a password: it is never logged or stored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    kind: ServiceKind
    url: str | None = Field(default=None, repr=False)
    path: Path | None = None
    password_env: str | None = None
    env: list[str] | None = None  # the worker variables its tools get (workers.child_env)
    config: bool = False
    schedule: str | None = None
    # kind = "command": argv lists run without a shell, in the worker's environment.
    dump_command: list[str] | None = None
    restore_command: list[str] | None = None
    format: str | None = None  # the artifact's extension; DEFAULT_COMMAND_FORMAT when unset
    fail_on_stderr: bool = True  # a command that writes to stderr fails the artifact
    # A drill (workers/sources/command_drill.py): restores stdin into the scratch target named
    # by $BACKFLEET_SCRATCH; without it the service cannot be drilled ("not configured").
    test_restore_command: list[str] | None = None
    # Prints `name count` lines: run before each dump (the manifest's row_counts), which
    # a drill compares with the `name count` lines test_restore_command prints.
    count_command: list[str] | None = None
    # kind = "directory": restore device nodes, FIFOs and setuid/setgid bits (off: left out).
    special_files: bool = False
    # Any kind: commands run before and after its dump (a snapshot, a flush, stop/start).
    hooks: HooksSpec | None = None
    # Its protection policy (workers/services_config/policy.py): unset keys take the defaults.
    retention: RetentionSpec | None = None
    max_age: str | None = None
    rto: str | None = None
    verify: str | None = None
    test_restore: str | None = None
    # kind = "postgres": protected continuously (issue 21): base backups plus streamed WAL,
    # restorable to any moment of the last `pitr_window` (else PITR_WINDOW).
    pitr: bool = False
    pitr_window: str | None = None
    # kind = "postgres": keep the roles' password hashes with the roles every backup keeps;
    # only with BACKUP_ENCRYPTION_KEY (workers/sources/postgres_roles.py).
    role_passwords: bool = False

    @field_validator("max_age", "rto", "verify", "test_restore", "pitr_window")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        return check_duration(value)

    # Size anomalies: this service's own drop fraction and growth factor (else SIZE_ANOMALY_*).
    size_drop: Annotated[float, Field(ge=0, lt=1)] | None = None
    size_growth: Annotated[float, Field(ge=0, le=1_000_000)] | None = None

    @field_validator("size_growth")
    @classmethod
    def _growth_factor(cls, value: float | None) -> float | None:
        if value is not None:
            check_growth_factor(value)
        return value

    _argv = field_validator(
        "dump_command", "restore_command", "test_restore_command", "count_command", mode="before"
    )(check_argv)

    @field_validator("password_env")
    @classmethod
    def _variable_name(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        if value is not None:
            _no_fleet_secret([value])
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _variable_names(cls, value: object) -> object:
        if value is None:
            return value
        if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
            raise ValueError('must be a list of environment variable names, e.g. ["KUBECONFIG"]')
        bad = [name for name in value if not ENV_NAME.match(name)]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))}: not environment variable names")
        _no_fleet_secret(value)
        return value

    @field_validator("url")
    @classmethod
    def _url_parses(cls, value: str | None) -> str | None:
        # Never echo the URL: it may hold a password.
        if value is not None and value.startswith(("postgres://", "postgresql://")):
            if not _unambiguous_userinfo(value):
                raise ValueError(
                    "`url` holds a raw '@', '/', '?' or '#' in its user or password, which "
                    "libpq would read as part of the host or database: percent-encode them "
                    "(%40, %2F, %3F, %23)"
                )
            import psycopg  # here: most commands never read a postgres URL
            from psycopg.conninfo import conninfo_to_dict

            try:
                conninfo_to_dict(value)
            except psycopg.Error:
                raise ValueError(
                    "`url` is not a valid PostgreSQL URL (percent-encode spaces and other "
                    "special characters in its password)"
                ) from None
        return value

    @field_validator("format")
    @classmethod
    def _format_word(cls, value: str | None) -> str | None:
        if value is not None and not FORMAT_WORD.match(value):
            raise ValueError(
                f"{value!r} must be a short word (the artifact's extension): lower-case "
                "letters, digits and '-', 1-16 characters, e.g. \"sql\""
            )
        return value

    @model_validator(mode="after")
    def _location_fits_kind(self) -> "ServiceSpec":
        if self.kind == "postgres" and not self.url:
            raise ValueError("a postgres service needs `url`")
        if self.kind in ("sqlite", "directory") and self.path is None:
            raise ValueError(f"a {self.kind} service needs `path`")
        if self.path is not None and any(RESTORE_LEFTOVER.search(p) for p in self.path.parts):
            # A restore's recovery removes such names beside its target (or moves one
            # into the target's place): another service's data must never bear one.
            raise ValueError(
                f"`path` {str(self.path)!r} is named like a restore's staging copy "
                "(`.<name>.backfleet-restore-…` or `.backfleet-old-…`): choose another name"
            )
        if self.kind == "command":
            missing = [key for key in ("dump_command", "restore_command") if not getattr(self, key)]
            if missing:
                raise ValueError(
                    f"a command service needs {' and '.join(f'`{k}`' for k in missing)}"
                )
            if self.url is not None or self.path is not None:
                raise ValueError("a command service takes no `url` or `path`: its commands say it")
        if self.env is not None and self.kind not in ("command", "postgres") and not self.hooks:
            raise ValueError(
                f"`env` is only for command and postgres services, not {self.kind}, unless "
                "it has [hooks] (their environment)"
            )
        if self.kind != "directory" and "special_files" in self.model_fields_set:
            raise ValueError(f'`special_files` is only for kind = "directory", not {self.kind}')
        if self.kind != "command":
            extra = [key for key in _COMMAND_KEYS if key in self.model_fields_set]
            if extra:
                keys = ", ".join(f"`{key}`" for key in extra)
                verb = "is" if len(extra) == 1 else "are"
                raise ValueError(f'{keys} {verb} only for kind = "command", not {self.kind}')
        if self.kind != "postgres" and ({"pitr", "pitr_window"} & self.model_fields_set):
            raise ValueError(
                f'`pitr` and `pitr_window` are only for kind = "postgres", not {self.kind}'
            )
        if self.kind != "postgres" and "role_passwords" in self.model_fields_set:
            raise ValueError(f'`role_passwords` is only for kind = "postgres", not {self.kind}')
        if "pitr_window" in self.model_fields_set and not self.pitr:
            raise ValueError("`pitr_window` needs `pitr = true`")
        if self.schedule is not None:
            parse_cron(self.schedule)
        return self

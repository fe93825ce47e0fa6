"""The command line's exit codes, and what an error that ends a command prints.

    0  the command did what it was asked
    1  the operation failed or was refused (a backup that failed, a backup not found,
       one already running, a verification that failed, a stale namespace in `status`)
    2  the command was used wrongly: a bad argument or option, or invalid settings
    3  the fleet cannot be reached: the broker, the catalog or the store did not answer

Scripts can tell "try again later" (3) from "fix the call" (2) and "look at the
backup" (1). Every message names what to fix; none carries a secret.
"""

import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from workers.cli.fleet_env import stopped_up_hint
from workers.errors import BackfleetError, ConfigError, InvalidRequestError, UnreachableError
from workers.redact import redact

if TYPE_CHECKING:
    from workers.settings import Settings

OK, FAILED, USAGE, UNREACHABLE = 0, 1, 2, 3


def message_of(exc: BackfleetError) -> str:
    """What the command prints: the error, and for a broker that does not answer, that the
    `backfleet up` whose fleet file this command read has stopped, if it has."""
    text = str(exc)
    if isinstance(exc, UnreachableError) and "(BROKER_URL)" in text:
        text += stopped_up_hint()
    return text


def exit_code_of(exc: BackfleetError) -> int:
    if isinstance(exc, UnreachableError):
        return UNREACHABLE
    if isinstance(exc, ConfigError | InvalidRequestError):
        return USAGE
    return FAILED


# What a catalog that answers says when the fault is in the settings or the schema, not
# in its being up: the call is wrong (exit 2), and trying again will not help.
_CATALOG_MISCONFIGURED = {
    "no such table": "its tables are missing or behind: run `backfleet migrate`",
    "does not exist": "the database, a table or the role does not exist: run `backfleet "
    "migrate`, or fix DATABASE_URL",
    "password authentication failed": "the password is refused: fix DATABASE_URL",
    "unable to open database file": "the SQLite file cannot be opened: fix DATABASE_URL",
}


def outage_of(exc: Exception) -> BackfleetError | None:
    """A catalog or broker that did not answer, as an error naming it and its setting
    (UnreachableError: exit 3), or one that answered that the settings or the schema are
    wrong (ConfigError: exit 2); None for any other exception (a bug: let it show)."""
    from workers.settings import get_settings

    settings = get_settings()
    kind = _catalog_error(exc)
    if kind is not None:
        where = f"the catalog at {redact(settings.database_url)} (DATABASE_URL)"
        text = str(exc).lower()
        for clue, fix in _CATALOG_MISCONFIGURED.items():
            if clue in text:
                return ConfigError(f"{where}: {fix}")
        if kind == "ProgrammingError":
            return None  # a query the schema does not fit: a bug, let it show
        return UnreachableError(f"cannot reach {where}: {kind}; start it or fix DATABASE_URL")
    what, url, setting = _redis_named_by(exc, settings)
    if _raised_by(
        exc, "redis.exceptions", ("AuthenticationError", "AuthenticationWrongNumberOfArgsError")
    ):
        return ConfigError(
            f"the {what} at {redact(url)} ({setting}) refused the credentials: fix {setting}"
        )
    if _raised_by(exc, "redis.exceptions", ("ConnectionError", "TimeoutError")) or _raised_by(
        exc, "kombu.exceptions", ("OperationalError",)
    ):
        return UnreachableError(
            f"cannot reach the {what} at {redact(url)} ({setting}): "
            f"{type(exc).__name__}; start it or fix {setting}"
        )
    return None


def _redis_named_by(exc: Exception, settings: "Settings") -> tuple[str, str, str]:
    """Which of the fleet's Redis servers an error came from: the locks' or the results'
    own server when one is set apart and the error names its address, else the broker."""
    text = str(exc)
    for what, url, setting in (
        ("lock server", settings.lock_redis_url, "LOCK_REDIS_URL"),
        ("result backend", settings.result_backend_url, "RESULT_BACKEND_URL"),
    ):
        address = _address_of(url) if url else ""
        if url and address in text and address != _address_of(settings.broker_url):
            return what, url, setting
    return "broker", settings.broker_url, "BROKER_URL"


def _address_of(url: str) -> str:
    """`host:port` as redis-py's connection errors write it (a socket URL: its path)."""
    parts = urlsplit(url)
    if parts.scheme in ("unix", "redis+socket"):
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


def _catalog_error(exc: Exception) -> str | None:
    """The kind of a catalog error: SQLAlchemy's (the ORM's sessions), or the driver's as
    SQLAlchemy would name it (catalog/direct.py, which `backfleet backup` writes with)."""
    wrapped = ("OperationalError", "InterfaceError", "ProgrammingError")
    if _raised_by(exc, "sqlalchemy.exc", wrapped):
        return type(exc).__name__
    if _raised_by(exc, "workers.catalog.direct", ("CatalogDriverError",)):
        return str(getattr(exc, "kind", "OperationalError"))
    return None


def _raised_by(exc: Exception, module: str, names: tuple[str, ...]) -> bool:
    """Is `exc` one of `module`'s exceptions? Looked up only if something loaded the module
    (a command that never touched the catalog pays nothing for SQLAlchemy here)."""
    loaded = sys.modules.get(module)
    classes = tuple(getattr(loaded, name) for name in names if hasattr(loaded, name))
    return bool(classes) and isinstance(exc, classes)

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

from workers.errors import BackfleetError, ConfigError, InvalidRequestError, UnreachableError
from workers.redact import redact

OK, FAILED, USAGE, UNREACHABLE = 0, 1, 2, 3


def exit_code_of(exc: BackfleetError) -> int:
    if isinstance(exc, UnreachableError):
        return UNREACHABLE
    if isinstance(exc, ConfigError | InvalidRequestError):
        return USAGE
    return FAILED


def outage_of(exc: Exception) -> UnreachableError | None:
    """A catalog or broker that did not answer, as an error naming it and its setting;
    None for any other exception (a bug: let it show)."""
    from workers.settings import get_settings

    if _raised_by(exc, "sqlalchemy.exc", ("OperationalError", "InterfaceError")):
        what, setting, url = "the catalog", "DATABASE_URL", get_settings().database_url
    elif _raised_by(exc, "redis.exceptions", ("ConnectionError", "TimeoutError")) or _raised_by(
        exc, "kombu.exceptions", ("OperationalError",)
    ):
        what, setting, url = "the broker", "BROKER_URL", get_settings().broker_url
    else:
        return None
    return UnreachableError(
        f"cannot reach {what} at {redact(url)} ({setting}): {type(exc).__name__}; "
        f"start it or fix {setting}"
    )


def _raised_by(exc: Exception, module: str, names: tuple[str, ...]) -> bool:
    """Is `exc` one of `module`'s exceptions? Looked up only if something loaded the module
    (a command that never touched the catalog pays nothing for SQLAlchemy here)."""
    loaded = sys.modules.get(module)
    classes = tuple(getattr(loaded, name) for name in names if hasattr(loaded, name))
    return bool(classes) and isinstance(exc, classes)

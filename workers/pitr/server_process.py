"""The scratch server's process: the OS user it runs as (never root), the folder handed
to that user, its process group signalled, and its death tied to the worker's."""

import contextlib
import os
import pwd
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workers.errors import ConfigError


def account(user: str | None) -> pwd.struct_passwd | None:
    """The OS account of `user` (None: the worker's own, nothing to switch to)."""
    if user is None:
        return None
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(
            f"the worker runs as root and the scratch PostgreSQL must not: there is no "
            f"`{user}` OS user to run it as (install the PostgreSQL server package, which "
            "makes it, or run the worker as another user)"
        ) from None
    return None if account.pw_uid == os.geteuid() else account


def user_kwargs(account: pwd.struct_passwd | None) -> dict[str, Any]:
    if account is None:
        return {}
    # Root's supplementary groups are dropped too.
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def hand_over(folder: Path, account: pwd.struct_passwd) -> None:
    """Everything in the scratch folder owned by the server's user (unpacked as root)."""
    os.chown(folder, account.pw_uid, account.pw_gid)
    for parent, folders, files in os.walk(folder):
        for name in [*folders, *files]:
            os.lchown(os.path.join(parent, name), account.pw_uid, account.pw_gid)


def signal_group(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, number)


def die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to SIGKILL the server when the worker dies (Linux).

    It runs after the switch to the server's user (a switch clears that request)."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the worker died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec

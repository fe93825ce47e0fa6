"""A restore's commit: the staging folder swapped in for the target (renameat2's
RENAME_EXCHANGE, or two renames), and `recover_target` for what a killed restore left."""

import ctypes
import errno
import logging
import os
import secrets
import shutil
import stat
from functools import cache
from pathlib import Path
from typing import Any

from workers.errors import SourceError

log = logging.getLogger(__name__)


def _staging_prefix(target: Path) -> str:
    return f".{target.name}.backfleet-restore-"


def _old_prefix(target: Path) -> str:
    return f".{target.name}.backfleet-old-"


def _swap(staging: Path, target: Path) -> None:
    old = target.with_name(f"{_old_prefix(target)}{secrets.token_hex(8)}")
    try:
        if not os.path.lexists(target):
            os.rename(staging, target)
            return
        if exchange(staging, target):
            old = staging  # one atomic step: the staging name now holds the previous tree
        else:
            # Two renames: the target is missing for an instant, never half restored;
            # a worker killed in that instant is undone by recover_target().
            os.rename(target, old)
            try:
                os.rename(staging, target)
            except BaseException:
                os.rename(old, target)
                raise
    except OSError as exc:
        raise SourceError(f"could not swap the restored copy into {target}: {exc}") from None
    try:
        _remove_tree(old)
    except OSError:  # the restore itself succeeded; the leftover is only disk space
        log.warning("restored %s but could not remove the previous copy %s", target, old)


# renameat2(2) flag and "relative to the working directory" (linux/fcntl.h, linux/fs.h).
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
# The kernel or filesystem cannot exchange: fall back to two renames.
_NO_EXCHANGE = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}


def exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths atomically (renameat2 RENAME_EXCHANGE); False if unsupported."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE):
        code = ctypes.get_errno()
        if code in _NO_EXCHANGE:
            return False
        raise OSError(code, os.strerror(code), str(first), None, str(second))
    return True


@cache
def _renameat2() -> Any:
    """libc's renameat2 (glibc 2.28+, musl 1.2.4+), or None where it has none."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    c_int, path = ctypes.c_int, ctypes.c_char_p
    function.argtypes = [c_int, path, c_int, path, ctypes.c_uint]
    function.restype = c_int
    return function


def recover_target(target: Path) -> None:
    """Undo what a restore killed mid-way left beside `target` (held under its namespace lock).

    If the target is missing and a tree renamed aside by the two-rename swap is
    there, it goes back: that is the data before the restore. Then every
    staging folder (partial, verified but not swapped, or the previous tree
    after an exchange) and every other tree renamed aside is removed.
    """
    parent = target.parent
    if not parent.is_dir():
        return
    names = os.listdir(parent)
    olds = sorted(n for n in names if n.startswith(_old_prefix(target)))
    if olds and not os.path.lexists(target):
        back = parent / olds.pop(0)  # one at most: a restore puts it back before it goes on
        os.rename(back, target)
        log.warning("put back %s, renamed aside by a restore that was killed", target)
    leftovers = [n for n in names if n.startswith(_staging_prefix(target))] + olds
    for name in leftovers:
        log.warning("removing %s, left by a restore that was killed", parent / name)
        _remove_tree(parent / name)


def _remove_quietly(path: str) -> None:
    try:
        _remove_tree(path)
    except OSError:  # the original failure matters more than the cleanup's
        log.exception("could not remove the restore staging folder %s", path)


def _remove_tree(path: str | Path) -> None:
    """rmtree that copes with folders restored without write permission (e.g. 0o500)."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except PermissionError:
        os.chmod(path, stat.S_IRWXU)
        for parent, folders, _files in os.walk(path):
            for folder in folders:
                full = os.path.join(parent, folder)
                if not os.path.islink(full):  # never chmod through a link
                    os.chmod(full, stat.S_IRWXU)
        shutil.rmtree(path)

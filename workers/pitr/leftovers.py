"""Scratch folders whose worker died (SIGKILL, a hard time limit, a lost node): removed.

Each scratch folder holds an `owner` file naming the process that made it (its pid and
its start time, so a reused pid is not taken for it). A folder whose owner is gone is
removed by the next scratch made under the same root, after its server, if one still
runs, is killed (it normally dies with its parent: the worker asks the kernel for that).
"""

import contextlib
import logging
import os
import shutil
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)

OWNER_FILE = "owner"
# A folder without an owner file is one being made: left alone for this long.
UNOWNED_GRACE = 3600.0


def process_identity(pid: int) -> str | None:
    """`<pid> <start time>`, or None when no such process runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return str(pid)  # no /proc: the pid alone
    # The command name (field 2) may hold spaces: fields count from its closing ')'.
    return f"{pid} {stat.rsplit(')', 1)[1].split()[19]}"


def write_owner(folder: Path) -> None:
    identity = process_identity(os.getpid())
    (folder / OWNER_FILE).write_text(identity or str(os.getpid()))


def _alive(folder: Path) -> bool:
    try:
        recorded = (folder / OWNER_FILE).read_text().strip()
    except FileNotFoundError:
        return time.time() - folder.stat().st_mtime < UNOWNED_GRACE
    pid = recorded.split()[0]
    return pid.isdigit() and process_identity(int(pid)) == recorded


def _kill_server(folder: Path) -> None:
    """The postmaster named by the data folder's postmaster.pid, if it still runs."""
    try:
        pid = int((folder / "data" / "postmaster.pid").read_text().split()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return
    if b"postgres" not in command or str(folder).encode() not in command:
        return  # the pid was reused by something else
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)  # its backends exit when the postmaster is gone


def sweep(root: Path, prefix: str) -> None:
    """Remove the scratch folders under `root` whose owner process is gone."""
    try:
        folders = [path for path in root.iterdir() if path.name.startswith(prefix)]
    except OSError:
        return
    for folder in folders:
        try:
            if _alive(folder):
                continue
        except OSError:
            continue
        log.warning("removing the scratch PostgreSQL folder %s: its worker is gone", folder)
        _kill_server(folder)
        shutil.rmtree(folder, ignore_errors=True)

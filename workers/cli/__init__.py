"""The command line (`backfleet`, `python -m workers.cli`), `backfleet up`, the container
healthcheck and progress bars: the only part of workers/ that may import tasks/ or api/.

Commands import what they need inside their function: only so that `backfleet --help`
and every short command start without loading Celery, SQLAlchemy or the store SDKs.
Nothing below imports this package, so those imports close no cycle.
"""

import atexit
import contextlib
import os
import sys
import threading
from pathlib import Path

from workers.cli import admin as admin  # registers its commands on `main`
from workers.cli import alerts as alerts  # `backfleet alerts`
from workers.cli import report as report  # `backfleet report`
from workers.cli import restore as restore  # `backfleet restore`
from workers.cli import status as status  # `backfleet status`
from workers.cli import storage as storage  # registers `storage` on `main`
from workers.cli import wal as wal  # `backfleet wal`
from workers.cli.commands import main as main
from workers.cli.exits import USAGE
from workers.cli.fleet_env import load_fleet_env
from workers.errors import BackfleetError


def run() -> None:
    """`backfleet` and `python -m workers.cli`: run the command, then leave at once.

    When `main` returns, the command's work is done: its output written, its rows
    committed, its task published. Tearing down the thousand modules it loaded
    (SQLAlchemy, Celery, pydantic) then took another 0.12-0.18 s, which every
    `backup --wait` paid after the backup had ended. atexit handlers still run;
    a command that left a thread of its own running exits the ordinary way.
    """
    try:
        _find_the_fleet()
        main()
        code: int = 0
    except SystemExit as stop:
        code = _exit_status(stop.code)
    main_thread = threading.main_thread()
    if any(t is not main_thread and t.is_alive() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code)


def _find_the_fleet() -> None:
    """Every command but `up` reads the settings `backfleet up` wrote (cli/fleet_env.py)."""
    if sys.argv[1:2] == ["up"]:
        return  # `up` decides where the fleet lives; a stale file must not decide for it
    try:
        load_fleet_env(os.environ, Path.cwd(), say=lambda text: print(text, file=sys.stderr))
    except BackfleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(USAGE) from None


def _exit_status(code: object) -> int:
    """The status Python gives `sys.exit(code)`: None is 0, a message is 1 (printed)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1

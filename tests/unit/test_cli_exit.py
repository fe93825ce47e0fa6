"""`backfleet` leaves as soon as its command is done (workers/cli/__init__.py `run`),
with the command's exit status, its output flushed and the atexit handlers run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workers.cli import _exit_status

ROOT = Path(__file__).resolve().parents[2]
RUN = """
import atexit, sys
atexit.register(lambda: print("atexit ran"))  # buffered: shows only if flushed after it
sys.argv = ["backfleet", *sys.argv[1:]]
from workers.cli import run
run()
"""


def _backfleet(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", RUN, *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_a_command_s_output_and_atexit_handlers_survive_the_quick_exit() -> None:
    done = _backfleet("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: backfleet") and done.stdout.endswith("atexit ran\n")


def test_a_usage_error_keeps_its_status() -> None:
    done = _backfleet("no-such-command")
    assert done.returncode == 2 and "No such command" in done.stderr


@pytest.mark.parametrize(("code", "status"), [(None, 0), (0, 0), (3, 3), ("a message", 1)])
def test_exit_codes_mean_what_sys_exit_makes_of_them(code: object, status: int) -> None:
    assert _exit_status(code) == status

"""Running one of a service's hooks: a command before (`pre`) or after (`post`) its dump.

A hook runs like a command service's tools (workers/sources/process.py): an argv
list, no shell, stdin from /dev/null, in a session of its own, with the minimal
environment of the service's tools (`child_env.tool_env`: PATH, HOME, LANG, TZ,
its `env` names and its `password_env`; never the worker's secrets). Its stdout
and stderr share one pipe, of which the last OUTPUT_TAIL_BYTES are kept, with
secret-shaped values, the service's password and every secret of the fleet
masked. Past its time limit the hook's whole process group is terminated (then
killed after a grace), so `sh -c "a; b"` and whatever it started stop too.

`run_hook` does not raise for the hook's own failure (a non-zero exit, a time
limit, a missing program): it says what happened, and the backup decides what
that means (workers/operations/hooks.py). It re-raises anything that stops the
task itself (e.g. the soft time limit), after stopping the hook.
"""

import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from workers.child_env import tool_env
from workers.errors import SourceError
from workers.sources.process import StderrTail, exit_status, redact_output, spawn, stop_group

HookName = Literal["pre", "post"]
OUTPUT_TAIL_BYTES = 4 * 1024


@dataclass(frozen=True)
class HookResult:
    hook: HookName
    program: str  # the base name of argv[0] (the arguments may say more than a record should)
    ok: bool
    detail: str  # how it ended: exit 0, exit 3, killed by SIGKILL, timed out after 600 s…
    output: str  # the tail of its stdout and stderr, redacted
    started_at: datetime
    finished_at: datetime

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def summary(self) -> str:
        """`pre hook incus failed (exit 1): Error: …` — for an error, a warning or an alert."""
        verdict = "ran" if self.ok else "failed"
        said = self.output or "(no output)"
        return f"{self.hook} hook {self.program} {verdict} ({self.detail}): {said}"


def run_hook(
    hook: HookName,
    argv: Sequence[str],
    *,
    env: Sequence[str] = (),
    password_env: str | None = None,
    secrets: Sequence[str] = (),
    timeout: float,
) -> HookResult:
    """Run `argv` to its end or for `timeout` seconds; `env` and `password_env` are the
    service's, `secrets` the fleet's (masked in the output)."""
    program = os.path.basename(argv[0])
    started_at, began = datetime.now(UTC), time.monotonic()

    def result(ok: bool, detail: str, output: str = "") -> HookResult:
        finished_at = started_at + _elapsed(began)
        return HookResult(hook, program, ok, detail, output, started_at, finished_at)

    try:
        process = spawn(
            argv,
            env=tool_env(env, password_env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # one pipe: the output in the order it was written
        )
    except SourceError as exc:  # not installed, not executable
        return result(False, redact_output(str(exc), password_env=password_env, secrets=secrets))
    output = StderrTail(process.stdout, OUTPUT_TAIL_BYTES)
    timed_out = False
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        stop_group(process)
    except BaseException:  # the task is being stopped: the hook must not run on
        stop_group(process)
        raise
    text = redact_output(output.text(), password_env=password_env, secrets=secrets)
    if timed_out:
        return result(False, f"timed out after {timeout:g} s, stopped", text)
    return result(process.returncode == 0, exit_status(process.returncode), text)


def _elapsed(began: float) -> timedelta:
    return timedelta(seconds=time.monotonic() - began)

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
task itself (e.g. the soft time limit), after stopping the hook, except what the
caller names in `finish_despite`: then the hook runs on to its limits (`post`,
which puts things back), and the result carries the exception for the caller to
raise once the run is recorded. Output is redacted before it is cut to its tail
(sources/process.py: StderrTail), so no part of a secret the cut falls inside
survives.
"""

import dataclasses
import os
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from workers.child_env import tool_env
from workers.sources.process import (
    WAKE_EVERY,
    CannotStart,
    StderrTail,
    exit_status,
    redact_output,
    spawn,
    stop_group,
)

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
    started: bool = True  # False: it could not start (`detail` says why)
    # What told the task to stop while the hook ran on (`finish_despite`): raise it once recorded.
    interrupted: BaseException | None = field(default=None, compare=False)

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def summary(self) -> str:
        """`pre hook incus failed (exit 1): Error: …` — for an error, a warning or an alert."""
        if not self.started:
            return f"{self.hook} hook {self.program} could not start: {self.detail}"
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
    stop_by: float | None = None,
    finish_despite: tuple[type[BaseException], ...] = (),
) -> HookResult:
    """Run `argv` to its end or for `timeout` seconds; `env` and `password_env` are the
    service's, `secrets` the fleet's (masked in the output).

    `stop_by` (a time.monotonic() instant: the task's hard time limit, less a margin)
    stops it sooner when it comes first. An exception of a `finish_despite` type raised
    while it runs (the soft time limit, for `post`) does not stop it: it runs on to
    those limits, and the result carries the exception in `interrupted`, for the caller
    to raise once the run is recorded. Any other exception stops it and is re-raised.

    The hook is started, waited for and read in a thread of its own: an exception a
    signal handler raises (the soft time limit) comes in this, the main, thread only,
    so it can never land between the hook's start and the code that manages it (in a
    one-process worker, tasks/time_limits.py raises it in the task's thread: this one)."""
    run = _Run(hook, argv, env, password_env, secrets, timeout, stop_by)
    thread = threading.Thread(target=run.run, name=f"backfleet-{hook}-hook", daemon=True)
    interrupted: BaseException | None = None
    begun = False
    while True:
        try:
            if not begun:  # once: a thread started twice would run the hook twice
                begun = True
                thread.start()
            # not thread.join(): an exception there can mark the thread ended. In slices:
            # a one-process worker's soft time limit lands between two (process.WAKE_EVERY).
            while not run.done.wait(WAKE_EVERY):
                pass
        except finish_despite as exc:  # the task is told to stop: this hook runs on
            interrupted = interrupted or exc
            continue
        except BaseException:  # the task is being stopped: the hook must not run on
            run.cancel()
            raise
        break
    if run.error is not None:
        raise run.error
    assert run.result is not None
    return dataclasses.replace(run.result, interrupted=interrupted)


class _Run:
    """One run of a hook, in the thread `run_hook` starts."""

    def __init__(
        self,
        hook: HookName,
        argv: Sequence[str],
        env: Sequence[str],
        password_env: str | None,
        secrets: Sequence[str],
        timeout: float,
        stop_by: float | None,
    ) -> None:
        self.hook, self.argv, self.env, self.password_env = hook, argv, env, password_env
        self.secrets, self.timeout, self.stop_by = secrets, timeout, stop_by
        self.program = os.path.basename(argv[0])
        self.lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self.cancelled = False
        self.result: HookResult | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def cancel(self) -> None:
        """Stop the hook's process group (or the hook, before it starts)."""
        with self.lock:
            self.cancelled = True
            process = self.process
        if process is not None:
            stop_group(process)

    def run(self) -> None:
        try:
            self.result = self._run()
        except BaseException as exc:  # for run_hook to raise in the caller's thread
            self.error = exc
        finally:
            self.done.set()

    def _clean(self, text: str) -> str:
        return redact_output(text, password_env=self.password_env, secrets=self.secrets)

    def _run(self) -> HookResult:
        started_at, began = datetime.now(UTC), time.monotonic()
        limit, capped = began + self.timeout, False
        if self.stop_by is not None and self.stop_by < limit:
            limit, capped = self.stop_by, True

        def result(ok: bool, detail: str, output: str = "", started: bool = True) -> HookResult:
            finished_at = started_at + _elapsed(began)
            return HookResult(
                self.hook, self.program, ok, detail, output, started_at, finished_at, started
            )

        try:
            process = spawn(
                self.argv,
                env=tool_env(self.env, self.password_env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,  # one pipe: the output in the order it was written
            )
        except CannotStart as exc:  # not installed, not executable
            return result(False, self._clean(exc.why), started=False)
        output = StderrTail(process.stdout, OUTPUT_TAIL_BYTES)
        with self.lock:
            self.process = process
            cancelled = self.cancelled
        timed_out = False
        if cancelled:  # the task stopped while it started
            stop_group(process)
        else:
            try:
                process.wait(max(0.0, limit - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
                stop_group(process)
        text = output.text(self._clean)
        if timed_out and capped:
            ran = time.monotonic() - began
            detail = f"stopped after {ran:.0f} s: the backup's BACKUP_TIME_LIMIT was near"
            return result(False, detail, text)
        if timed_out:
            return result(False, f"timed out after {self.timeout:g} s, stopped", text)
        return result(process.returncode == 0, exit_status(process.returncode), text)


def _elapsed(began: float) -> timedelta:
    return timedelta(seconds=time.monotonic() - began)

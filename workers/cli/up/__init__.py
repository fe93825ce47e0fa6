"""`backfleet up`: the whole fleet on one machine, as one process tree.

It prepares ./var (API key, demo services, catalog, local store), starts a
private Redis unless BROKER_URL/REDIS_URL is set, migrates the catalog, then
runs the API, a worker, beat, Flower and the WAL streamers (`backfleet wal`), all on
127.0.0.1. Ctrl-C or SIGTERM
stops every child (Redis last); if any child dies, the rest are stopped too.

This module is the supervisor; var_dir.py keeps ./var and its keys, demo.py the demo
services, environment.py what the children run, processes.py starting and stopping them.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

from workers.cli.embedded_redis import start_embedded_redis, stop_embedded_redis
from workers.cli.fleet_env import write_fleet_env
from workers.cli.up.demo import create_demo, wants_demo
from workers.cli.up.environment import (
    banner,
    child_specs,
    needs_embedded_redis,
    port_of,
    prepare_environment,
)
from workers.cli.up.processes import (
    Child,
    ChildSpec,
    StopRequest,
    answers,
    run_to_end,
    spawn,
    stop_children,
    supervise,
)
from workers.cli.up.var_dir import load_or_create_api_key, prepare_var_dir
from workers.errors import ConfigError

# What tests and callers import from here; each piece lives in its own module.
__all__ = [
    "ChildSpec",
    "StopRequest",
    "banner",
    "child_specs",
    "create_demo",
    "load_or_create_api_key",
    "main",
    "needs_embedded_redis",
    "prepare_environment",
    "prepare_var_dir",
    "run_up",
    "spawn",
    "stop_children",
    "supervise",
    "wants_demo",
]

MIGRATE_TIMEOUT_SECONDS = 300.0
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_up(var_dir: Path = Path("var")) -> int:
    stop = StopRequest()
    previous = {
        signum: signal.signal(signum, stop)
        for signum in HANDLED_SIGNALS
        # always SIGINT and SIGTERM (even if a shell started us with SIGINT ignored);
        # SIGHUP only when not ignored, so `nohup backfleet up` keeps running
        if signum != signal.SIGHUP or signal.getsignal(signum) is not signal.SIG_IGN
    }
    redis_process: subprocess.Popen[bytes] | None = None
    children: list[Child] = []
    try:
        var_dir = prepare_var_dir(var_dir)
        api_key = None if os.environ.get("BACKFLEET_API_KEYS") else load_or_create_api_key(var_dir)
        services = create_demo(var_dir) if wants_demo(os.environ, Path.cwd()) else None
        env = prepare_environment(var_dir, os.environ, api_key=api_key, services_file=services)
        if "OBJECT_STORE_LOCATION_LOCAL" not in os.environ:
            Path(env["OBJECT_STORE_LOCATION_LOCAL"]).mkdir(mode=0o700, exist_ok=True)
        api_port = port_of(env, "BACKFLEET_API_PORT")
        for name in ("BACKFLEET_API_PORT", "BACKFLEET_FLOWER_PORT"):
            if answers(port_of(env, name)):
                raise ConfigError(f"port {env[name]} is already in use: set {name} to another")

        if needs_embedded_redis(env):
            redis_process, env["BROKER_URL"] = start_embedded_redis(var_dir / "redis")
            print(f"backfleet up: embedded Redis at {env['BROKER_URL']}", flush=True)
        generated = [n for n in ("BACKUP_SIGNING_KEY",) if n in env and n not in os.environ]
        write_fleet_env(var_dir, env, generated, up_pid=os.getpid())

        migrate = ChildSpec("migrate", [sys.executable, "-m", "workers.cli", "migrate"])
        code = run_to_end(migrate, env, stop, MIGRATE_TIMEOUT_SECONDS)
        if stop.requested:
            return 0
        if code != 0:
            print(f"backfleet up: the catalog migration failed (code {code})", file=sys.stderr)
            return 1

        for spec in child_specs(env, var_dir):
            children.append(spawn(spec, env))

        announced = False

        def announce_when_ready() -> None:
            nonlocal announced
            if not announced and answers(api_port):
                print(banner(env, api_key, var_dir), flush=True)
                announced = True

        return supervise(children, stop, announce_when_ready)
    except (ConfigError, RuntimeError) as exc:
        print(f"backfleet up: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        if stop.requested:
            print("backfleet up: stopping…", file=sys.stderr, flush=True)
        stop_children(children, stop=stop)
        if redis_process is not None:
            stop_embedded_redis(redis_process)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main() -> None:
    raise SystemExit(run_up())

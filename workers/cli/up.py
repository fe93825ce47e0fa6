"""`backfleet up`: the whole fleet on one machine, as one process tree.

It prepares ./var (API key, demo services, catalog, local store), starts a
private Redis unless BROKER_URL/REDIS_URL is set, migrates the catalog, then
runs the API, a worker, beat and Flower, all on 127.0.0.1. Ctrl-C or SIGTERM
stops every child (Redis last); if any child dies, the rest are stopped too.
"""

import contextlib
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from workers.cli.embedded_redis import die_with_parent, start_embedded_redis, stop_embedded_redis
from workers.errors import ConfigError
from workers.queues import ALL_QUEUES

STOP_GRACE_SECONDS = 20.0
MIGRATE_TIMEOUT_SECONDS = 300.0
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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


# --- ./var, the API key and the demo -------------------------------------------------------


def prepare_var_dir(var_dir: Path) -> Path:
    """Create (or tighten) the var directory, mode 0700; return its absolute path."""
    var_dir = var_dir.resolve()
    var_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    var_dir.chmod(0o700)
    return var_dir


def load_or_create_api_key(var_dir: Path) -> str:
    """The key kept in <var>/api-key (mode 0600), generated on first use."""
    return _load_or_create_secret(var_dir / "api-key", "API key")


def load_or_create_signing_key(var_dir: Path) -> str:
    """The manifest signing key kept in <var>/signing-key (mode 0600), generated on first use.

    Without one, manifests go unsigned and a catalog that lost its rows could
    restore its own backups only with `allowUnsigned`.
    """
    return _load_or_create_secret(var_dir / "signing-key", "signing key")


def _load_or_create_secret(path: Path, what: str) -> str:
    try:
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(32)  # URL-safe alphabet: never ':' or ','; 43 characters
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(key + "\n")
        return key
    if not key or any(char in key for char in ":, \t"):
        raise ConfigError(f"{path} does not hold a usable {what}; delete it to get a new one")
    path.chmod(0o600)
    return key


def _create_demo_database(path: Path) -> None:
    if path.exists():
        return
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with sqlite3.connect(partial) as db:
        db.executescript(
            """
            CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL, owner TEXT);
            CREATE TABLE jobs (id INTEGER PRIMARY KEY, project_id INTEGER REFERENCES projects(id),
                               status TEXT NOT NULL, started_at TEXT);
            INSERT INTO projects VALUES (1, 'orders', 'ada@example.com'),
                                        (2, 'billing', 'grace@example.com'),
                                        (3, 'reports', 'alan@example.com');
            INSERT INTO jobs VALUES (1, 1, 'Success', '2023-02-02T16:00:00Z'),
                                    (2, 1, 'Failed', '2023-02-02T17:00:00Z'),
                                    (3, 2, 'Running', '2023-02-02T17:03:15Z');
            """
        )
    partial.rename(path)


DEMO_CONFIG_FILES = {
    "app.toml": 'name = "demo"\nlog_level = "info"\n',
    "feature-flags.json": '{"new-dashboard": true, "beta-export": false}\n',
    "nginx/site.conf": "server {\n    listen 127.0.0.1:8000;\n}\n",
}


def _create_demo_directory(path: Path) -> None:
    if path.exists():
        return
    partial = Path(tempfile.mkdtemp(prefix=".config-", dir=path.parent))
    for name, text in DEMO_CONFIG_FILES.items():
        (partial / name).parent.mkdir(parents=True, exist_ok=True)
        (partial / name).write_text(text, encoding="utf-8")
    partial.chmod(0o755)
    partial.rename(path)


def create_demo(var_dir: Path) -> Path:
    """The demo services (created once) and their services file; return the file's path."""
    demo = var_dir / "demo"
    demo.mkdir(exist_ok=True)
    database, config = demo / "app.db", demo / "config"
    _create_demo_database(database)
    _create_demo_directory(config)
    services = var_dir / "backfleet.toml"
    services.write_text(
        "# Written by `backfleet up` on every start: to protect your own services,\n"
        "# set BACKFLEET_CONFIG or create ./backfleet.toml.\n"
        'namespace = "app"\n\n'
        "[services.metadata]\n"
        'kind = "sqlite"\n'
        f"path = {_toml_string(database)}\n\n"
        "[services.config]\n"
        'kind = "directory"\n'
        f"path = {_toml_string(config)}\n"
        "config = true\n",
        encoding="utf-8",
    )
    return services


def _toml_string(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def wants_demo(environ: Mapping[str, str], cwd: Path) -> bool:
    """The demo is used unless the user names a services file or has ./backfleet.toml."""
    return not environ.get("BACKFLEET_CONFIG") and not (cwd / "backfleet.toml").exists()


# --- the environment of the children ----------------------------------------------------


def prepare_environment(
    var_dir: Path, environ: Mapping[str, str], *, api_key: str | None, services_file: Path | None
) -> dict[str, str]:
    """The children's environment: the caller's, plus one-machine defaults where unset."""
    env = dict(environ)
    if api_key is not None and not env.get("BACKFLEET_API_KEYS"):
        env["BACKFLEET_API_KEYS"] = f"{api_key}:admin@localhost:local"
    if services_file is not None:
        env["BACKFLEET_CONFIG"] = str(services_file)
    if not env.get("BACKUP_SIGNING_KEY") and not env.get("BACKUP_ENCRYPTION_KEY"):
        env["BACKUP_SIGNING_KEY"] = load_or_create_signing_key(var_dir)
    env.setdefault("DATABASE_URL", f"sqlite:///{var_dir / 'backfleet.db'}")
    env.setdefault("OBJECT_STORE_LOCATION_LOCAL", str(var_dir / "backup"))
    env.setdefault("BACKFLEET_API_PORT", "8080")
    env.setdefault("BACKFLEET_FLOWER_PORT", "5555")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def needs_embedded_redis(environ: Mapping[str, str]) -> bool:
    return not (environ.get("BROKER_URL") or environ.get("REDIS_URL"))


def port_of(env: Mapping[str, str], name: str) -> int:
    try:
        port = int(env[name])
    except ValueError:
        raise ConfigError(f"invalid setting {name}: must be a port number") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"invalid setting {name}: must be between 1 and 65535")
    return port


def child_specs(env: Mapping[str, str], var_dir: Path) -> list[ChildSpec]:
    python = sys.executable
    celery = [python, "-m", "celery", "-A", "tasks.app"]
    api_port, flower_port = env["BACKFLEET_API_PORT"], env["BACKFLEET_FLOWER_PORT"]
    return [
        ChildSpec(
            "api",
            [python, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", api_port],
        ),
        ChildSpec(
            "worker",
            [
                *celery,
                "worker",
                "-Q",
                ALL_QUEUES,
                "--concurrency",
                "2",
                "-E",
                "--loglevel",
                "INFO",
                "-n",
                "backfleet@%h",
            ],
        ),
        ChildSpec(
            "beat",
            [
                *celery,
                "beat",
                "--schedule",
                str(var_dir / "celerybeat-schedule"),
                "--loglevel",
                "INFO",
            ],
        ),
        ChildSpec(
            "flower",
            [*celery, "flower", "--address=127.0.0.1", f"--port={flower_port}"],
        ),
    ]


def banner(env: Mapping[str, str], api_key: str | None, var_dir: Path) -> str:
    base = f"http://127.0.0.1:{env['BACKFLEET_API_PORT']}"
    v1 = f"{base}/athena/api/v1"
    key = api_key if api_key is not None else "<a key from BACKFLEET_API_KEYS>"
    auth = f'-H "Authorization: {key}"'
    json = '-H "Content-Type: application/json"'
    where = (
        f"(kept in {var_dir / 'api-key'})" if api_key is not None else "(from BACKFLEET_API_KEYS)"
    )
    return "\n".join(
        [
            "",
            "Backfleet is up.",
            f"  API      {base}",
            f"  API docs {base}/docs",
            f"  Flower   http://127.0.0.1:{env['BACKFLEET_FLOWER_PORT']}",
            f"  API key  {key}  {where}",
            "",
            "Try it:",
            f"  curl -X POST {auth} {json} -d '{{}}' {v1}/ondemandbackup",
            f"  curl {auth} {v1}/backup/latest",
            f'  curl -X POST {auth} {json} -d \'{{"timestamp": "<timestamp>"}}\' '
            f"{v1}/ondemandrestore",
            f'  curl {auth} "{v1}/restorestatus?timestamp=<timestamp>"',
            "",
            "Press Ctrl-C to stop everything.",
            "",
        ]
    )


# --- processes -------------------------------------------------------------------------


def spawn(spec: ChildSpec, env: Mapping[str, str]) -> Child:
    """Start a child in its own process group (so Ctrl-C reaches only the supervisor,
    which stops the children in order) that gets SIGTERM if the supervisor dies."""
    process = subprocess.Popen(
        spec.argv,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent(),
    )
    return Child(spec, process)


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


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


# --- the supervisor ----------------------------------------------------------------------


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
            if _answers(port_of(env, name)):
                raise ConfigError(f"port {env[name]} is already in use: set {name} to another")

        if needs_embedded_redis(env):
            redis_process, env["BROKER_URL"] = start_embedded_redis(var_dir / "redis")
            print(f"backfleet up: embedded Redis at {env['BROKER_URL']}", flush=True)

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
            if not announced and _answers(api_port):
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


if __name__ == "__main__":
    main()

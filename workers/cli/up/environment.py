"""What the children of `backfleet up` run: their environment, command lines and ports,
and the banner that tells the user where to find them."""

import sys
from collections.abc import Mapping
from pathlib import Path

from workers.cli.up.processes import ChildSpec
from workers.cli.up.var_dir import load_or_create_signing_key
from workers.errors import ConfigError
from workers.queues import ALL_QUEUES


def prepare_environment(
    var_dir: Path, environ: Mapping[str, str], *, api_key: str | None, services_file: Path | None
) -> dict[str, str]:
    """The children's environment: the caller's, plus one-machine defaults where unset."""
    env = dict(environ)
    if api_key is not None and not env.get("BACKFLEET_API_KEYS"):
        env["BACKFLEET_API_KEYS"] = f"{api_key}:admin@localhost:local"
    if services_file is not None:
        env["BACKFLEET_CONFIG"] = str(services_file)
    # Absolute, so var/fleet.env means the same file from any folder.
    env["BACKFLEET_CONFIG"] = str(Path(env.get("BACKFLEET_CONFIG") or "backfleet.toml").resolve())
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
        # The WAL streamers of `pitr` services (idle without one).
        ChildSpec("wal", [python, "-m", "workers.cli", "wal"]),
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
            "In another shell, commands run in this folder reach this fleet (they read",
            f"{var_dir / 'fleet.env'}; from elsewhere, export BACKFLEET_ENV_FILE=<that path>):",
            "  backfleet list    backfleet backup --wait    backfleet restore latest --wait",
            "",
            "Press Ctrl-C to stop everything.",
            "",
        ]
    )

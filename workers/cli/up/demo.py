"""The demo services `backfleet up` protects when the user names none of their own."""

import sqlite3
import tempfile
from collections.abc import Mapping
from pathlib import Path


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

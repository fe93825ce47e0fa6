"""A small real fleet for the verification, retention and alert tests.

A catalog (SQLite, or PostgreSQL when given its URL), a store (the local one
unless another is given), and one namespace `app` whose SQLite database and
directory are real files; backups run in-process through workers.operations.backup.
"""

import hashlib
import os
import sqlite3
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.fleet import Fleet
from workers.operations.backup import run_backup
from workers.repository.manifest import Manifest, manifest_key
from workers.services_config import parse_fleet_config
from workers.settings import Settings
from workers.stores import ObjectStore
from workers.stores.local import LocalStore


def make_fleet(
    tmp_path: Path,
    *,
    store: ObjectStore | None = None,
    database_url: str | None = None,
    settings: Settings | None = None,
    extra_services: str = "",
    **overrides: Any,
) -> Fleet:
    database_url = database_url or f"sqlite:///{tmp_path / 'catalog.db'}"
    upgrade_catalog(database_url)
    data = tmp_path / "data"
    (data / "files" / "sub").mkdir(parents=True, exist_ok=True)
    (data / "files" / "a.txt").write_text("alpha\n")
    (data / "files" / "sub" / "b.bin").write_bytes(os.urandom(50_000))
    with sqlite3.connect(data / "app.db") as db:
        db.execute("CREATE TABLE IF NOT EXISTS nodes (id INTEGER PRIMARY KEY, label TEXT)")
        db.executemany("INSERT INTO nodes (label) VALUES (?)", [(f"n{i}",) for i in range(200)])
    config = parse_fleet_config(
        f"""
namespace = "app"
[namespaces.app.services.db]
kind = "sqlite"
path = "{data / "app.db"}"
[namespaces.app.services.files]
kind = "directory"
path = "{data / "files"}"
{extra_services}
"""
    )
    if store is None:
        store = LocalStore(tmp_path / "store")
        store.init()
    values: dict[str, Any] = {
        "database_url": database_url,
        "object_store_location_local": tmp_path / "store",
        **overrides,
    }
    if settings is not None:
        values = {**settings.model_dump(), **values}
    return Fleet(settings=Settings(**values), config=config, store=store)


def take_backup(fleet: Fleet, *, namespace: str = "app", moment: datetime | None = None) -> str:
    """A real backup of the namespace, run in this process; returns its timestamp."""
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.create_backup(
            session,
            namespace=namespace,
            services=sorted(fleet.config.services_of(namespace)),
            only_config=False,
            trigger="test",
            moment=moment,
        )
        timestamp = backup.timestamp
    outcome = run_backup(fleet, namespace=namespace, timestamp=timestamp)
    assert outcome.status == "Success", outcome.error
    return timestamp


def capture_system_events(monkeypatch: Any, module: ModuleType) -> list[dict[str, Any]]:
    """The system events `module` records, as the keyword arguments it passed."""
    recorded: list[dict[str, Any]] = []
    monkeypatch.setattr(module, "record_system_event", lambda **kw: recorded.append(kw))
    return recorded


def rewrite_manifest(fleet: Fleet, manifest: Manifest, *, namespace: str = "app") -> None:
    """Store `manifest` as if this fleet had written it: its digest goes to the catalog too."""
    data = manifest.to_bytes()
    fleet.store.put_object(manifest_key(namespace, manifest.timestamp), data)
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.get_backup(session, namespace=namespace, timestamp=manifest.timestamp)
        assert backup is not None
        backup.manifest_sha256 = hashlib.sha256(data).hexdigest()

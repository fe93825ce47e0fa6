from datetime import timedelta
from pathlib import Path

import pytest

from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import RUNNING
from workers.fleet import Fleet
from workers.operations.sweep import abort_stale_uploads
from workers.services_config import parse_fleet_config
from workers.settings import Settings
from workers.stores.base import PendingUpload
from workers.stores.memory import MemoryStore
from workers.timestamps import utcnow


class AgedStore(MemoryStore):
    """A memory store whose uploads report a start time."""

    def __init__(self) -> None:
        super().__init__()
        self.started: dict[str, object] = {}

    def list_uploads(self, prefix: str):  # type: ignore[no-untyped-def]
        for upload in super().list_uploads(prefix):
            yield PendingUpload(upload.key, upload.upload_id, self.started[upload.upload_id])  # type: ignore[arg-type]


def test_old_orphans_go_running_and_young_uploads_stay(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/catalog.db"
    upgrade_catalog(url)
    store = AgedStore()
    fleet = Fleet(
        settings=Settings(database_url=url, stale_upload_age=3600),
        config=parse_fleet_config('[services.db]\nkind = "sqlite"\npath = "/x.db"\n'),
        store=store,
    )
    old, young, running = (store.create_upload(f"app/t/{n}") for n in ("old", "young", "run"))
    store.started = {
        old: utcnow() - timedelta(days=2),
        young: utcnow(),
        running: utcnow() - timedelta(days=2),
    }
    with session_scope(url) as session:
        backup = queries.create_backup(
            session, namespace="app", services=["db"], only_config=False, trigger="api"
        )
        backup.status = RUNNING
        artifact = queries.upsert_artifact(
            session,
            backup=backup,
            service="db",
            kind="sqlite",
            key="app/t/run",
            fmt="sqlite",
            compression="zstd",
        )
        artifact.upload_id = running

    preview = abort_stale_uploads(fleet, dry_run=True)
    assert preview.aborted == ["app/t/old"] and old in store.uploads

    result = abort_stale_uploads(fleet)
    assert result.aborted == ["app/t/old"]
    assert sorted(result.kept) == ["app/t/run", "app/t/young"]
    assert set(store.uploads) == {young, running}
    dispose_engines()


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)

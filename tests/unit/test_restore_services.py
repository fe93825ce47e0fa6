"""`svcs` and `--skip` name services the backup holds; toggles are booleans, not strings.

The API in-process on a real SQLite catalog and local store (tests/unit/test_api.py's
fleet); the CLI through click, with the same fleet from the environment.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from api.main import create_app
from tests.unit.test_api import (
    AUTH,
    BASE,
    CONFIG,
    KEY,
    SIGNING_KEY,
    RecordingEnqueue,
    make_fleet,
    write_manifest,
)
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import Restore
from workers.cli import main
from workers.fleet import Fleet, reset_fleet
from workers.stores.local import LocalStore

TIMESTAMP = "2023-02-02t17-03-15"
HELD = "gitserver, postgres, settings"  # what write_manifest's backup holds


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("BROKER_URL", "redis://127.0.0.1:1/0")
    made = make_fleet(tmp_path, f"{KEY}:ops@example.com:acme")
    assert isinstance(made.store, LocalStore)
    write_manifest(made.store, "app", TIMESTAMP)
    yield made
    dispose_engines()


def restore(fleet: Fleet, body: dict[str, Any]) -> tuple[int, Any, RecordingEnqueue]:
    enqueue = RecordingEnqueue()
    with TestClient(create_app(lambda: fleet, enqueue)) as client:
        answer = client.post(f"{BASE}/ondemandrestore", headers=AUTH, json=body)
    return answer.status_code, answer.json(), enqueue


def test_an_unknown_service_is_422_naming_it_and_what_the_backup_holds(fleet: Fleet) -> None:
    svcs = {"postgress": {"disable": True}, "gitserver": {"disable": True}}
    code, answer, enqueue = restore(fleet, {"timestamp": TIMESTAMP, "svcs": svcs})
    assert code == 422
    assert "postgress" in answer["message"] and HELD in answer["message"]
    assert enqueue.calls == []
    with session_scope(fleet.settings.database_url) as session:
        assert session.query(Restore).count() == 0


@pytest.mark.parametrize("word", ["disable", "disabled"])
def test_disabled_is_a_synonym_of_disable(fleet: Fleet, word: str) -> None:
    body = {"timestamp": TIMESTAMP, "svcs": {"postgres": {word: True}}}
    code, _, enqueue = restore(fleet, body)
    assert code == 202 and len(enqueue.calls) == 1
    with session_scope(fleet.settings.database_url) as session:
        assert session.query(Restore).one().skipped == ["postgres"]


def test_disable_and_disabled_that_disagree_are_refused(fleet: Fleet) -> None:
    body = {"timestamp": TIMESTAMP, "svcs": {"postgres": {"disable": False, "disabled": True}}}
    code, answer, enqueue = restore(fleet, body)
    assert code == 422 and "disagree" in answer["message"] and enqueue.calls == []


@pytest.mark.parametrize("value", ["true", 1, "yes", None])
def test_toggles_accept_only_booleans(fleet: Fleet, value: Any) -> None:
    body = {"timestamp": TIMESTAMP, "svcs": {"postgres": {"disable": value}}}
    code, answer, enqueue = restore(fleet, body)
    assert code == 422 and "disable" in answer["message"] and enqueue.calls == []
    with TestClient(create_app(lambda: fleet, enqueue)) as client:
        backup = client.post(f"{BASE}/ondemandbackup", headers=AUTH, json={"onlyConfig": value})
    assert backup.status_code == 422 and "onlyConfig" in backup.json()["message"]
    assert enqueue.calls == []


def test_the_cli_refuses_an_unknown_skip_the_same_way(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "backfleet.toml"
    config.write_text(CONFIG)
    monkeypatch.setenv("BACKFLEET_CONFIG", str(config))
    monkeypatch.setenv("DATABASE_URL", fleet.settings.database_url)
    monkeypatch.setenv("BACKUP_SIGNING_KEY", SIGNING_KEY)  # the manifest's MAC key
    monkeypatch.setenv(
        "OBJECT_STORE_LOCATION_LOCAL", str(fleet.settings.object_store_location_local)
    )
    reset_fleet()
    try:
        result = CliRunner().invoke(main, ["restore", TIMESTAMP, "--skip", "nosuch"])
    finally:
        reset_fleet()
    assert result.exit_code == 2
    assert "nosuch" in result.output and HELD in result.output
    with session_scope(fleet.settings.database_url) as session:
        assert session.query(Restore).count() == 0

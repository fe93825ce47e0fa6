"""Storage you can see and budget, from real backups: `backfleet storage` (table and JSON),
`/metrics` and the report agree with the catalog and with what the store holds; a
namespace past its budget opens `storage.over_budget` through a real webhook, and
retention deleting enough resolves it.

Against rclone serve s3 with SQLite and PostgreSQL catalogs, a local store, a real HTTP
webhook receiver and Redis (retention's lock).
"""

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from tasks.alerts import check_staleness as check_task
from tests.health_fleet import make_fleet, take_backup
from tests.plugins.object_stores import S3Server
from tests.unit.test_metrics_status import scrape
from tests.webhook import WebhookServer, webhook_server
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import Alert
from workers.catalog.storage import MANIFESTS
from workers.cli import main
from workers.fleet import Fleet
from workers.monitoring.notify import check_storage_budgets
from workers.monitoring.storage import storage_report
from workers.operations.backup import run_backup
from workers.operations.gfs import Policy
from workers.operations.retention import apply_retention
from workers.stores import make_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
GiB = 1024**3


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


@pytest.fixture(params=["sqlite", "postgres"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_database"))
    return f"sqlite:///{tmp_path / 'catalog.db'}"


def _failed_backup(fleet: Fleet, tmp_path: Path) -> str:
    """A backup whose `db` is stored but whose `files` fails: the backup is Failed."""
    moved = tmp_path / "data" / "files-away"
    (tmp_path / "data" / "files").rename(moved)
    with session_scope(fleet.settings.database_url) as session:
        stamp = queries.create_backup(
            session, namespace="app", services=["db", "files"], only_config=False, trigger="t"
        ).timestamp
    assert run_backup(fleet, namespace="app", timestamp=stamp).status == "Failed"
    moved.rename(tmp_path / "data" / "files")
    return stamp


def _in_the_store(fleet: Fleet, stamps: list[str]) -> dict[str, tuple[int, int]]:
    """Objects and bytes per service (by object name) of these backups, listed in the store."""
    found: dict[str, tuple[int, int]] = {}
    for stamp in stamps:
        for info in fleet.store.list(f"app/{stamp}/"):
            name = info.key.rsplit("/", 1)[1]
            service = name if name == MANIFESTS else name.split(".", 1)[0]
            objects, size = found.get(service, (0, 0))
            found[service] = (objects + 1, size + info.size)
    return found


def test_storage_report_metrics_and_cli_agree_with_the_catalog_and_the_store(
    tmp_path: Path,
    s3_server: S3Server,
    s3_bucket: str,
    catalog: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = s3_server.make_settings(
        s3_bucket, storage_prices="STANDARD=0.023,Hot=0.018", storage_budget_bytes="1GiB"
    )
    fleet = make_fleet(
        tmp_path, store=make_store(settings), settings=settings, database_url=catalog
    )
    now = datetime.now(UTC)
    stamps = [take_backup(fleet, moment=now - timedelta(hours=h)) for h in (2, 1)]
    failed = _failed_backup(fleet, tmp_path)

    expected = _in_the_store(fleet, stamps)  # Success backups only: what a bill would show
    assert set(expected) == {"db", "files", MANIFESTS} and expected[MANIFESTS][0] == 2
    assert _in_the_store(fleet, [failed]).get("db")  # stored, yet not counted (see the docs)
    (app,) = storage_report(fleet)
    assert {row.service: (row.objects, row.size) for row in app.services} == expected
    assert {row.tier for row in app.services} == {"STANDARD"}
    total = sum(size for _, size in expected.values())
    assert app.size == total and app.budget == GiB and not app.over_budget
    assert app.monthly_cost == pytest.approx(total / GiB * 0.023)

    samples = scrape(fleet)
    for service, (_, size) in expected.items():
        labels = (
            ("kind", "backup"),
            ("namespace", "app"),
            ("service", service),
            ("tier", "STANDARD"),
        )
        assert samples[("backfleet_stored_bytes", labels)] == size
    cost = samples[("backfleet_storage_monthly_cost", (("namespace", "app"), ("tier", "STANDARD")))]
    assert cost == pytest.approx(total / GiB * 0.023)
    assert samples[("backfleet_storage_budget_bytes", (("namespace", "app"),))] == GiB
    costs = [labels for name, labels in samples if name == "backfleet_storage_monthly_cost"]
    assert {dict(labels)["tier"] for labels in costs} == {"STANDARD"}

    monkeypatch.setattr("workers.fleet.current_fleet", lambda: fleet)
    runner = CliRunner()
    shown = runner.invoke(main, ["storage", "--json"])
    assert shown.exit_code == 0, shown.output
    (data,) = json.loads(shown.output)
    assert data["namespace"] == "app" and data["storedBytes"] == total
    assert {r["service"]: r["storedBytes"] for r in data["services"]} == {
        service: size for service, (_, size) in expected.items()
    }
    assert data["budgetBytes"] == GiB and data["overBudget"] is False
    table = runner.invoke(main, ["storage", "--namespace", "app"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split()[:4] == ["NAMESPACE", "SERVICE", "KIND", "TIER"]
    for service, (objects, _) in expected.items():
        wanted = ["app", service, "backup", "STANDARD", str(objects)]
        assert any(line.split()[:5] == wanted for line in lines)
    assert "of budget 1.0 GiB" in lines[-1]


def _alerts(fleet: Fleet) -> list[tuple[str, bool]]:
    with session_scope(fleet.settings.database_url) as session:
        rows = session.scalars(
            select(Alert).where(Alert.event == "storage.over_budget").order_by(Alert.id)
        ).all()
        return [(row.condition, row.resolved_at is None) for row in rows]


def _sent(webhook: WebhookServer) -> list[dict[str, Any]]:
    """What the webhook received about storage (the old backups are stale too)."""
    return [body for body in webhook.received if body["event"].startswith("storage.")]


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with webhook_server() as server:
        yield server


def test_a_namespace_over_its_budget_is_alerted_until_retention_brings_it_under(
    tmp_path: Path,
    webhook: WebhookServer,
    redis_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet = make_fleet(tmp_path, broker_url=redis_server.url, alert_webhook_url=webhook.url)
    monkeypatch.setattr("tasks.alerts.current_fleet", lambda: fleet)
    start = datetime.now(UTC) - timedelta(hours=3)
    take_backup(fleet, moment=start)
    (one,) = storage_report(fleet)
    # Room for one backup and a half: the second one passes the budget.
    fleet = replace(
        fleet,
        settings=fleet.settings.model_copy(update={"storage_budget_bytes": one.size * 3 // 2}),
    )
    assert check_task()["overBudget"] == []  # the staleness check's task runs the budgets
    assert _sent(webhook) == [] and _alerts(fleet) == []

    take_backup(fleet, moment=start + timedelta(hours=1))
    assert check_task()["overBudget"] == ["app"]
    assert check_task()["overBudget"] == ["app"]  # still over: not sent again
    (sent,) = _sent(webhook)
    assert sent["event"] == "storage.over_budget" and sent["namespace"] == "app"
    assert "over its storage budget" in sent["text"] and "STORAGE_BUDGET_BYTES" in sent["text"]
    assert _alerts(fleet) == [("storage.over_budget:app", True)]
    assert scrape(fleet)[("backfleet_alerts_open", (("event", "storage.over_budget"),))] == 1

    (plan,) = apply_retention(fleet, policy=Policy(hourly=1, daily=0, weekly=0, monthly=0))
    assert len(plan.delete) == 1  # the older backup, its objects and its row
    assert [item.namespace for item in check_storage_budgets(fleet) if item.over_budget] == []
    assert _alerts(fleet) == [("storage.over_budget:app", False)]  # resolved, and said once
    assert [body["status"] for body in _sent(webhook)] == ["open", "resolved"]

    take_backup(fleet, moment=start + timedelta(hours=2))  # over again: a new alert
    assert check_task()["overBudget"] == ["app"]
    assert [body["status"] for body in _sent(webhook)] == ["open", "resolved", "open"]
    assert _alerts(fleet) == [
        ("storage.over_budget:app", False),
        ("storage.over_budget:app", True),
    ]

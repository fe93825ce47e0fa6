"""Catalog revision 0014 (alert delivery states), on SQLite and PostgreSQL: the migration
matches the model, and an upgrade ends the re-sending of alerts that had resolved."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pydantic import SecretStr
from sqlalchemy import text

from tests.webhook import WebhookServer, webhook_server
from workers.catalog.db import dispose_engines, get_engine, session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import Alert, Base
from workers.monitoring.alerts import Alerter
from workers.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
    else:
        yield request.getfixturevalue("pg_database")
    dispose_engines()


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with webhook_server() as server:
        yield server


def test_the_migration_matches_the_model(catalog: str) -> None:
    upgrade_catalog(catalog)
    with get_engine(catalog).connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [d for d in diff if "alerts" in repr(d)] == []


def test_upgrading_stops_re_sending_resolved_alerts(catalog: str, webhook: WebhookServer) -> None:
    upgrade_catalog(catalog, "0013")
    now = datetime.now(UTC)
    earlier = now - timedelta(hours=2)
    rows = [  # (condition, delivered_at, resolved_at), as revision 0013 left them
        ("backup.stale:app:db", None, earlier),  # resolved, never delivered: was re-sent
        ("backup.failed:app:t1", None, earlier),  # a one-off event, never delivered
        ("drill.overdue:app:db", earlier, None),  # open and delivered
        ("backup.stale:app:files", None, None),  # open, owed
    ]
    with get_engine(catalog).begin() as connection:
        for condition, delivered, resolved in rows:
            connection.execute(
                text(
                    "INSERT INTO alerts (condition, event, namespace, text, opened_at, "
                    "delivered_at, attempts, resolved_at) VALUES (:c, :e, 'app', 'x', :o, :d, "
                    "5, :r)"
                ),
                {
                    "c": condition,
                    "e": condition.split(":")[0],
                    "o": earlier,
                    "d": delivered,
                    "r": resolved,
                },
            )
    upgrade_catalog(catalog)
    with session_scope(catalog) as session:
        states = {
            row.condition: (row.delivery, row.resolve_delivery) for row in session.query(Alert)
        }
    assert states == {
        "backup.stale:app:db": ("expired", None),
        "backup.failed:app:t1": ("expired", None),
        "drill.overdue:app:db": ("delivered", None),
        "backup.stale:app:files": ("pending", None),
    }
    settings = Settings(database_url=catalog, alert_webhook_url=SecretStr(webhook.url))
    alerter = Alerter(settings)
    assert alerter.redeliver() == 1  # only the open one that was owed
    assert alerter.redeliver() == 0
    assert [body.get("status") for body in webhook.received] == ["open"]

"""User events in the catalog on SQLite and PostgreSQL: recording helpers, purge, counts."""

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from tests.audit_events import DAY_MS, insert, make_events
from workers.audit import catalog
from workers.audit.lines import InvalidEventsError
from workers.audit.operations import backup_ended, restore_ended
from workers.audit.purge import purge_user_events
from workers.audit.ship import commit_shipped
from workers.audit.user_events import record_system_event, record_user_events
from workers.catalog import queries
from workers.catalog.db import dispose_engines, get_engine, session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import FAILED, SUCCESS, Artifact, Base, UserEvent
from workers.fleet import reset_fleet
from workers.settings import get_settings

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    made = (
        f"sqlite:///{tmp_path}/catalog.db"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_database")
    )
    upgrade_catalog(made)
    yield made
    dispose_engines()


@pytest.fixture
def enabled(url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """ENABLE_USER_EVENTS=true and DATABASE_URL=url, as a worker would read them."""
    monkeypatch.setenv("ENABLE_USER_EVENTS", "true")
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("BACKFLEET_API_KEYS", "very-secret-key:ops@example.com:acme")
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def all_events(url: str) -> list[UserEvent]:
    with session_scope(url) as session:
        return list(session.scalars(select(UserEvent).order_by(UserEvent.id)))


def test_the_migration_matches_the_models(url: str) -> None:
    with get_engine(url).connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [d for d in diff if "user_event" in repr(d)] == []


def test_purge_deletes_only_old_and_shipped_events(url: str) -> None:
    old = make_events(100, start=NOW_MS - 40 * DAY_MS, step_ms=1000, tag="old")
    young = make_events(20, start=NOW_MS - 5 * DAY_MS, tag="young")
    insert(url, old + young)
    insert(url, make_events(10, start=NOW_MS - 90 * DAY_MS, namespace="never", tag="x"))
    ids = [event.id for event in all_events(url)]
    commit_shipped(url, "app", ids[59])  # the first 60 old events are shipped, 40 are not

    assert purge_user_events(database_url=url, retention_days=30, now=NOW) == 60
    left = all_events(url)
    assert [e.request_params["tag"] for e in left] == ["old"] * 40 + ["young"] * 20 + ["x"] * 10
    assert left[0].id == ids[60]  # unshipped, however old, stays

    commit_shipped(url, "app", ids[-1])
    assert purge_user_events(database_url=url, retention_days=30, now=NOW) == 40
    assert purge_user_events(database_url=url, retention_days=1, now=NOW) == 20
    assert {e.namespace for e in all_events(url)} == {"never"}  # never shipped: kept
    with session_scope(url) as session:
        assert catalog.unshipped_event_count(session) == 10
        assert catalog.unshipped_event_count(session, namespace="app") == 0


def test_unshipped_count_and_horizon(url: str) -> None:
    insert(url, make_events(7) + make_events(3, namespace="b"))
    with session_scope(url) as session:
        assert catalog.unshipped_event_count(session) == 10
        assert catalog.shipping_horizon(session) == max(e.id for e in all_events(url))
    ids = [e.id for e in all_events(url) if e.namespace == "app"]
    commit_shipped(url, "app", ids[3])
    with session_scope(url) as session:
        assert catalog.unshipped_event_count(session) == 6
        assert catalog.unshipped_event_count(session, namespace="b") == 3


def test_system_events_are_recorded_and_never_raise(
    enabled: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    record_system_event(
        namespace="app",
        name="BackupVerified",
        params={"timestamp": "2026-11-21t10-00-00", "url": "postgresql://u:pw-123@db/x"},
        payload="checked with very-secret-key",
    )
    (event,) = all_events(enabled)
    assert (event.op_type, event.name_hints, event.user_email) == (
        "System",
        ["BackupVerified"],
        "backfleet",
    )
    assert event.request_params["url"] == "postgresql://u:***@db/x"
    assert "very-secret-key" not in event.request_payload

    # A catalog that cannot be written: logged (without the secret), never raised.
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw-456@127.0.0.1:1/none")
    get_settings.cache_clear()
    with caplog.at_level(logging.WARNING):
        record_system_event(namespace="app", name="BackupDeleted", payload="very-secret-key")
    assert "BackupDeleted" in caplog.text and "pw-456" not in caplog.text
    assert "very-secret-key" not in caplog.text


def test_nothing_is_recorded_when_disabled(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENABLE_USER_EVENTS", "false")
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        record_system_event(namespace="app", name="Backup")
        assert record_user_events([{"opType": "Q", "createdAt": 1}], namespace="app") == 0
    finally:
        get_settings.cache_clear()
    assert all_events(url) == []


def test_the_in_process_helper_validates_like_the_api(enabled: str) -> None:
    good = {"opType": "Mutation", "createdAt": NOW_MS, "nameHints": ["DeleteJob"]}
    assert record_user_events([good, good], namespace="app") == 2
    with pytest.raises(InvalidEventsError, match=r"line 2: createdAt: is required"):
        record_user_events([good, {"opType": "Q"}], namespace="app")
    assert len(all_events(enabled)) == 2


FLEET_CONFIG = """
namespace = "app"
[namespaces.app.services.db]
kind = "directory"
path = "/data/db"
[namespaces.prod.services.db]
kind = "directory"
path = "/data/db"
"""


@pytest.fixture
def configured(enabled: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`enabled`, with a fleet of namespaces `app` (the default) and `prod`."""
    config = tmp_path / "backfleet.toml"
    config.write_text(FLEET_CONFIG)
    monkeypatch.setenv("BACKFLEET_CONFIG", str(config))
    monkeypatch.setenv("OBJECT_STORE_LOCATION_LOCAL", str(tmp_path / "store"))
    reset_fleet()
    yield enabled
    reset_fleet()


def test_backups_and_restores_are_audit_events(configured: str) -> None:
    enabled = configured
    with session_scope(enabled) as session:
        backup = queries.create_backup(
            session,
            namespace="app",
            services=["db", "files"],
            only_config=False,
            trigger="api",
            requested_by="ops@example.com",
            requested_customer="acme",
            moment=NOW,
        )
        backup.status, backup.size = SUCCESS, 3072
        for service, sha in (("db", "a" * 64), ("files", "b" * 64)):
            backup.artifacts.append(
                Artifact(
                    service=service,
                    kind="sqlite",
                    key=f"app/x/{service}.zst",
                    format="sqlite",
                    compression="zstd",
                    size=1536,
                    sha256=sha,
                    status=SUCCESS,
                )
            )
        timestamp = backup.timestamp
    with session_scope(enabled) as session:
        restore = queries.create_restore(
            session,
            namespace="app",
            timestamp=timestamp,
            source_namespace="prod",
            services=["db"],
            skipped=["files"],
            backup_url="file:///b/prod/x/",
            requested_by="alice@example.com",
            requested_customer="globex",
        )
        restore.status, restore_id = FAILED, restore.id
        elsewhere = queries.create_restore(
            session,
            namespace="prod",
            timestamp=timestamp,
            source_namespace="nowhere",
            services=["db"],
            skipped=[],
            backup_url="file:///b/nowhere/x/",
        )
        elsewhere.status, elsewhere_id = SUCCESS, elsewhere.id

    backup_ended(enabled, namespace="app", timestamp=timestamp)
    restore_ended(enabled, restore_id=restore_id)
    restore_ended(enabled, restore_id=elsewhere_id)

    made, restored, restored_source, from_unknown = all_events(enabled)
    assert made.name_hints == ["Backup"] and made.user_email == "ops@example.com"
    assert (made.customer_name, restored.customer_name) == ("acme", "globex")
    # A restore from another namespace is in both trails; a source the fleet does not
    # configure gets no trail (nor a prefix, nor a label).
    assert (restored.namespace, restored_source.namespace) == ("app", "prod")
    assert restored_source.request_params == restored.request_params
    assert (from_unknown.namespace, from_unknown.user_email) == ("prod", "backfleet")
    # A System event of a namespace the fleet does not configure goes to the default one.
    record_system_event(namespace="gone", name="BackupDeleted", params={"timestamp": timestamp})
    (placed,) = all_events(enabled)[4:]
    assert placed.namespace == "app"
    assert placed.request_params == {"namespace": "gone", "timestamp": timestamp}
    assert made.request_params == {
        "timestamp": timestamp,
        "status": "Success",
        "trigger": "api",
        "services": "db,files",
        "bytes": "3072",
    }
    assert "a" * 64 in made.request_payload and "b" * 64 in made.request_payload
    assert (restored.name_hints, restored.user_email, restored.response_code) == (
        ["Restore"],
        "alice@example.com",
        500,
    )
    assert restored.request_params["sourceNamespace"] == "prod"
    assert restored.request_params["timestamp"] == timestamp


def test_purge_age_is_the_event_time(url: str) -> None:
    insert(url, make_events(3, start=NOW_MS - 31 * DAY_MS))
    commit_shipped(url, "app", max(e.id for e in all_events(url)))
    assert purge_user_events(database_url=url, retention_days=30, now=NOW) == 3
    assert purge_user_events(database_url=url, retention_days=30, now=NOW + timedelta(1)) == 0

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from celery.schedules import crontab

from beat_schedule import build_beat_schedule, schedule_entries
from workers.services_config import parse_fleet_config
from workers.settings import Settings
from workers.timestamps import parse_cron

CONFIG = """
[namespaces.a.services.db]
kind = "sqlite"
path = "/a.db"
[namespaces.b.services.db]
kind = "sqlite"
path = "/b.db"
"""


def test_no_backup_entries_unless_regular_backups_are_enabled() -> None:
    settings = Settings(enable_regular_backups=False)
    entries = schedule_entries(settings, parse_fleet_config(CONFIG))
    assert [(e.task, e.queue) for e in entries] == [
        ("tasks.retention.abort_stale_uploads", "maintenance"),
        ("tasks.verify.verify_backups", "verify"),
        ("tasks.verify.test_restore", "verify"),
        ("tasks.retention.apply_retention", "maintenance"),
        ("tasks.maintenance.reconcile", "maintenance"),
        ("tasks.alerts.check_staleness", "maintenance"),
    ]


def test_one_backup_entry_per_namespace_on_the_backup_queue() -> None:
    settings = Settings(enable_regular_backups=True, regular_backup_schedule="15 */2 * * *")
    entries = schedule_entries(settings, parse_fleet_config(CONFIG))
    backups = [e for e in entries if e.task == "tasks.backup.run_backup"]
    assert [(e.name, e.kwargs, e.queue, e.task) for e in backups] == [
        ("regular-backup-a", {"namespace": "a"}, "backup", "tasks.backup.run_backup"),
        ("regular-backup-b", {"namespace": "b"}, "backup", "tasks.backup.run_backup"),
    ]


def test_the_celery_schedule_is_a_utc_crontab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "backfleet.toml"
    config.write_text(CONFIG)
    settings = Settings(
        enable_regular_backups=True, backfleet_config=config, regular_backup_schedule="15 3 * * *"
    )
    schedule = build_beat_schedule(settings)
    entry = schedule["regular-backup-a"]
    assert isinstance(entry["schedule"], crontab)
    assert entry["schedule"].minute == {15} and entry["schedule"].hour == {3}
    assert entry["options"] == {"queue": "backup"}


PER_SERVICE = """
namespace = "app"
[services.postgres]
kind = "sqlite"
path = "/db.sqlite"
schedule = "0 * * * *"
[services.grafana]
kind = "directory"
path = "/grafana"
schedule = "30 2 * * *"
[services.stepca]
kind = "directory"
path = "/step"
schedule = "0 4 * * 0"
[services.gitserver]
kind = "directory"
path = "/git"
"""


def test_each_service_schedule_backs_up_the_services_on_it() -> None:
    settings = Settings(enable_regular_backups=True, regular_backup_schedule="0 */6 * * *")
    entries = schedule_entries(settings, parse_fleet_config(PER_SERVICE))
    backups = {e.name: (e.cron, e.kwargs) for e in entries if e.task == "tasks.backup.run_backup"}
    assert backups == {
        "regular-backup-app": (
            "0 */6 * * *",
            {"namespace": "app", "services": ["gitserver"], "schedule": "regular-backup-app"},
        ),
        "backup-app-postgres": (
            "0 * * * *",
            {"namespace": "app", "services": ["postgres"], "schedule": "backup-app-postgres"},
        ),
        "backup-app-grafana": (
            "30 2 * * *",
            {"namespace": "app", "services": ["grafana"], "schedule": "backup-app-grafana"},
        ),
        "backup-app-stepca": (
            "0 4 * * 0",
            {"namespace": "app", "services": ["stepca"], "schedule": "backup-app-stepca"},
        ),
    }


def test_services_sharing_the_regular_cron_go_together() -> None:
    settings = Settings(enable_regular_backups=True, regular_backup_schedule="0 * * * *")
    entries = schedule_entries(settings, parse_fleet_config(PER_SERVICE))
    backups = {e.name: e.kwargs.get("services") for e in entries if e.task.endswith("run_backup")}
    assert backups["regular-backup-app"] == ["gitserver", "postgres"]
    assert "backup-app-postgres" not in backups


def _runs(expression: str, start: datetime, minutes: int) -> list[datetime]:
    """The times a beat ticking every minute would dispatch `expression`."""
    import tasks.app  # noqa: F401  (binds crontabs to the app, whose timezone is UTC)

    schedule = parse_cron(expression)
    clock = [start]
    schedule.nowfun = lambda: clock[0]
    last, runs = start, []
    for minute in range(1, minutes + 1):
        clock[0] = start + timedelta(minutes=minute)
        due, _ = schedule.is_due(last)
        if due:
            runs.append(clock[0])
            last = clock[0]
    return runs


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/Berlin"])
@pytest.mark.parametrize(
    "dst_day", [datetime(2026, 3, 8, tzinfo=UTC), datetime(2026, 10, 25, tzinfo=UTC)]
)
def test_schedules_run_in_utc_so_a_dst_change_neither_doubles_nor_skips(
    zone: str, dst_day: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", zone)  # the machine's own zone must not matter
    time.tzset()
    try:
        start = dst_day - timedelta(hours=12)
        hourly = _runs("0 * * * *", start, 48 * 60)
        daily = _runs("30 2 * * *", start, 48 * 60)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert len(hourly) == 48 and len(set(hourly)) == 48
    assert all(run.minute == 0 and run.utcoffset() == timedelta(0) for run in hourly)
    assert [run.hour for run in daily] == [2, 2] and daily[1] - daily[0] == timedelta(days=1)


def test_the_secondary_copy_sweep_is_scheduled_only_with_a_secondary_store() -> None:
    settings = Settings(secondary_object_store_location_type="s3")
    entries = schedule_entries(settings, None)
    copies = [e for e in entries if e.task == "tasks.replicate.copy_to_secondary"]
    assert [(e.queue, e.cron) for e in copies] == [("maintenance", "*/15 * * * *")]
    assert not [
        e for e in schedule_entries(Settings(), None) if e.task.startswith("tasks.replicate")
    ]


def test_the_secondary_store_reads_its_own_prefixed_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workers.settings import secondary_settings

    monkeypatch.setenv("SECONDARY_OBJECT_STORE_LOCATION_TYPE", "s3")
    monkeypatch.setenv("SECONDARY_AWS_S3_BUCKET_NAME", "far-away-copy")
    monkeypatch.setenv("SECONDARY_RETENTION_KEEP_MONTHLY", "120")
    monkeypatch.setenv("AWS_S3_BUCKET_NAME", "primary")
    assert secondary_settings(Settings(secondary_object_store_location_type="")) is None
    # SECONDARY_OBJECT_STORE_LOCATION_TYPE is the main settings' switch and the copy's type.
    second = secondary_settings(Settings())
    assert second is not None
    assert second.object_store_location_type == "s3"
    assert second.aws_s3_bucket_name == "far-away-copy"
    assert second.retention_keep_monthly == 120
    monkeypatch.setenv("SECONDARY_AWS_S3_REGION", "")
    monkeypatch.setenv("SECONDARY_BACKUP_PART_SIZE", "12")
    with pytest.raises(Exception, match="SECONDARY_: invalid setting BACKUP_PART_SIZE"):
        secondary_settings(Settings(secondary_object_store_location_type="s3"))


def test_user_events_flush_and_purge_on_the_audit_queue_when_enabled() -> None:
    assert not [e for e in schedule_entries(Settings(), None) if e.task.startswith("tasks.audit.")]
    settings = Settings(
        enable_user_events=True, uevents_schedule="*/5 * * * *", uevents_gc_schedule="0 3 * * *"
    )
    audit = [
        (e.task, e.cron, e.queue)
        for e in schedule_entries(settings, None)
        if e.task.startswith("tasks.audit.")
    ]
    assert audit == [
        ("tasks.audit.flush_user_events", "*/5 * * * *", "audit"),
        ("tasks.audit.purge_user_events", "0 3 * * *", "audit"),
    ]


def test_status_s_next_backup_counts_every_schedule_of_the_namespace() -> None:
    from workers.fleet import Fleet
    from workers.monitoring.health import next_backup
    from workers.stores.memory import MemoryStore

    settings = Settings(enable_regular_backups=True, regular_backup_schedule="0 */6 * * *")
    fleet = Fleet(settings=settings, config=parse_fleet_config(PER_SERVICE), store=MemoryStore())
    now = datetime(2026, 11, 22, 1, 20, tzinfo=UTC)
    # postgres is hourly: sooner than the regular 06:00 and grafana's 02:30.
    assert next_backup(fleet, "app", now=now) == datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
    off = Fleet(settings=Settings(), config=fleet.config, store=fleet.store)
    assert next_backup(off, "app", now=now) is None

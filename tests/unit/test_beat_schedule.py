from pathlib import Path

import pytest
from celery.schedules import crontab

from beat_schedule import build_beat_schedule, schedule_entries
from workers.services_config import parse_fleet_config
from workers.settings import Settings

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
        ("tasks.retention.abort_stale_uploads", "maintenance")
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

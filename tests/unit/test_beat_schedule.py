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
        ("tasks.retention.abort_stale_uploads", "maintenance"),
        ("tasks.verify.verify_backups", "verify"),
        ("tasks.verify.test_restore", "verify"),
        ("tasks.retention.apply_retention", "maintenance"),
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
    from workers.secondary import secondary_settings

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

"""The beat schedule as plain data: which task, on which cron (UTC), on which queue."""

from dataclasses import dataclass, field
from typing import Any

from workers.cron import parse_cron
from workers.services_config import FleetConfig, load_fleet_config
from workers.settings import Settings


@dataclass(frozen=True)
class ScheduleEntry:
    name: str
    task: str
    cron: str
    queue: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def schedule_entries(settings: Settings, config: FleetConfig | None) -> list[ScheduleEntry]:
    """Every periodic job the settings ask for; one backup entry per namespace."""
    entries: list[ScheduleEntry] = [
        ScheduleEntry(
            name="abort-stale-uploads",
            task="tasks.retention.abort_stale_uploads",
            cron=settings.abort_stale_uploads_schedule,
            queue="maintenance",
        )
    ]
    if settings.enable_user_events:
        entries += [
            ScheduleEntry(
                name="flush-user-events",
                task="tasks.audit.flush_user_events",
                cron=settings.uevents_schedule,
                queue="audit",
            ),
            ScheduleEntry(
                name="purge-user-events",
                task="tasks.audit.purge_user_events",
                cron=settings.uevents_gc_schedule,
                queue="audit",
            ),
        ]
    if settings.enable_regular_backups and config is not None:
        for namespace in sorted(config.namespaces):
            entries.append(
                ScheduleEntry(
                    name=f"regular-backup-{namespace}",
                    task="tasks.backup.run_backup",
                    cron=settings.regular_backup_schedule,
                    queue="backup",
                    kwargs={"namespace": namespace},
                )
            )
    return entries


def build_beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery's `beat_schedule` mapping for these settings."""
    config = None
    if settings.enable_regular_backups:
        config = load_fleet_config(
            settings.backfleet_config, namespace_override=settings.backfleet_namespace
        )
    return {
        entry.name: {
            "task": entry.task,
            "schedule": parse_cron(entry.cron),
            "kwargs": entry.kwargs,
            "options": {"queue": entry.queue},
        }
        for entry in schedule_entries(settings, config)
    }

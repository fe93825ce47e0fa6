"""The beat schedule as plain data: which task, on which cron (UTC), on which queue."""

from dataclasses import dataclass, field
from typing import Any

from workers.services_config import FleetConfig, load_fleet_config
from workers.settings import Settings
from workers.timestamps import parse_cron


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
        ),
        ScheduleEntry(
            name="verify-backups",
            task="tasks.verify.verify_backups",
            cron=settings.verify_schedule,
            queue="verify",
        ),
        ScheduleEntry(
            name="test-restore",
            task="tasks.verify.test_restore",
            cron=settings.restore_test_schedule,
            queue="verify",
        ),
        ScheduleEntry(
            name="apply-retention",
            task="tasks.retention.apply_retention",
            cron=settings.retention_schedule,
            queue="maintenance",
        ),
        ScheduleEntry(
            name="reconcile",
            task="tasks.maintenance.reconcile",
            cron=settings.reconcile_schedule,
            queue="maintenance",
        ),
        ScheduleEntry(
            name="check-staleness",
            task="tasks.alerts.check_staleness",
            cron=settings.staleness_check_schedule,
            queue="maintenance",
        ),
    ]
    if settings.secondary_object_store_location_type:
        entries.append(
            ScheduleEntry(
                name="copy-to-secondary",
                task="tasks.replicate.copy_to_secondary",
                cron=settings.secondary_copy_schedule,
                queue="maintenance",
            )
        )
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
            entries.extend(backup_entries(settings, config, namespace))
    return entries


def backup_entries(settings: Settings, config: FleetConfig, namespace: str) -> list[ScheduleEntry]:
    """One entry per distinct cron of the namespace's services, each backing up its own.

    Services without a `schedule` of their own follow REGULAR_BACKUP_SCHEDULE.
    """
    by_cron = config.services_by_cron(namespace, settings.regular_backup_schedule)
    entries = []
    for cron, services in sorted(by_cron.items(), key=lambda item: item[1]):
        regular = cron == settings.regular_backup_schedule
        name = (
            f"regular-backup-{namespace}" if regular else f"backup-{namespace}-{'+'.join(services)}"
        )
        kwargs: dict[str, Any] = {"namespace": namespace}
        if len(by_cron) > 1:  # a part of the namespace's services: name them
            kwargs.update(services=services, schedule=name)
        entries.append(
            ScheduleEntry(name=name, task="tasks.backup.run_backup", cron=cron, queue="backup",
                          kwargs=kwargs)
        )  # fmt: skip
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

"""The beat schedule as plain data: which task, on which cron (UTC); its queue is the
task's own, from workers.queues."""

from dataclasses import dataclass, field
from typing import Any

from workers.queues import (
    ABORT_STALE_UPLOADS,
    APPLY_RETENTION,
    CHECK_STALENESS,
    COPY_TO_SECONDARY,
    FLUSH_USER_EVENTS,
    PURGE_USER_EVENTS,
    RECONCILE,
    RUN_BACKUP,
    TEST_RESTORE,
    VERIFY_BACKUPS,
    queue_of,
)
from workers.services_config import FleetConfig, load_fleet_config
from workers.settings import Settings
from workers.timestamps import parse_cron


@dataclass(frozen=True)
class ScheduleEntry:
    name: str
    task: str
    cron: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def queue(self) -> str:
        return queue_of(self.task)


def schedule_entries(settings: Settings, config: FleetConfig | None) -> list[ScheduleEntry]:
    """Every periodic job the settings ask for; one backup entry per namespace."""
    entries: list[ScheduleEntry] = [
        ScheduleEntry(
            name="abort-stale-uploads",
            task=ABORT_STALE_UPLOADS,
            cron=settings.abort_stale_uploads_schedule,
        ),
        ScheduleEntry(
            name="verify-backups",
            task=VERIFY_BACKUPS,
            cron=settings.verify_schedule,
        ),
        ScheduleEntry(
            name="test-restore",
            task=TEST_RESTORE,
            cron=settings.restore_test_schedule,
        ),
        ScheduleEntry(
            name="apply-retention",
            task=APPLY_RETENTION,
            cron=settings.retention_schedule,
        ),
        ScheduleEntry(
            name="reconcile",
            task=RECONCILE,
            cron=settings.reconcile_schedule,
        ),
        ScheduleEntry(
            name="check-staleness",
            task=CHECK_STALENESS,
            cron=settings.staleness_check_schedule,
        ),
    ]
    if settings.secondary_object_store_location_type:
        entries.append(
            ScheduleEntry(
                name="copy-to-secondary",
                task=COPY_TO_SECONDARY,
                cron=settings.secondary_copy_schedule,
            )
        )
    if settings.enable_user_events:
        entries += [
            ScheduleEntry(
                name="flush-user-events",
                task=FLUSH_USER_EVENTS,
                cron=settings.uevents_schedule,
            ),
            ScheduleEntry(
                name="purge-user-events",
                task=PURGE_USER_EVENTS,
                cron=settings.uevents_gc_schedule,
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
        entries.append(ScheduleEntry(name=name, task=RUN_BACKUP, cron=cron, kwargs=kwargs))
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

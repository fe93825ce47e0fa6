"""Flush and purge as the task and the CLI run them: from the fleet's settings."""

from workers.audit.purge import purge_user_events
from workers.audit.ship import FlushResult, ShipLimits, flush_user_events
from workers.fleet import Fleet
from workers.settings import Settings


def ship_limits(settings: Settings) -> ShipLimits:
    return ShipLimits(
        batch_events=settings.uevents_batch_events, file_bytes=settings.uevents_file_max_bytes
    )


def flush_from_settings(fleet: Fleet, *, namespace: str | None = None) -> FlushResult:
    return flush_user_events(
        store=fleet.store,
        database_url=fleet.settings.database_url,
        limits=ship_limits(fleet.settings),
        namespace=namespace,
        configured=fleet.config.namespaces,
    )


def purge_from_settings(settings: Settings) -> int:
    return purge_user_events(
        database_url=settings.database_url, retention_days=settings.uevents_retention_days
    )

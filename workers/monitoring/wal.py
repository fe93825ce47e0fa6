"""The WAL streaming of `pitr` services as the catalog says it (each streamer's latest word,
the shipped files, the gaps), and its alerts:

- `wal.lag`: the shipped WAL is older than WAL_RPO behind what the server wrote (or no
  streamer has said anything for that long); resolved when it catches up;
- `wal.retained`: the service's slot holds more than WAL_SLOT_MAX_RETAINED on the server;
- `wal.gap`: opened by the streamer when WAL went missing (workers/pitr/gaps.py); resolved
  here once a backup of the service succeeded after it (the window restarts there: until
  then the report says `window_closed`, which /metrics exports);
- `wal.not_streaming`: no streamer has streamed the service for NOT_STREAMING_GRACE, counted
  from its last word or, later, from when this process started (a fleet just started, or
  a services file just changed, has its streamers start first); a service never streamed
  at all counts from the start too. Resolved once a streamer streams it.

The alerts of a service no longer `pitr` in the services file are resolved (nobody judges
them any more), except wal.gap, which only a backup resolves.

Shared by `backfleet wal status`, /metrics and the staleness check. Never raises from the
alert judging: an alert must not break the work it reports on.
"""

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from workers.catalog import wal
from workers.catalog.db import session_scope
from workers.fleet import Fleet
from workers.monitoring.alerts import Alerter, AlertEvent, alerter_for, safely
from workers.monitoring.health import span
from workers.timestamps import utcnow

log = logging.getLogger(__name__)
EVENTS = ("wal.lag", "wal.retained", "wal.gap", "wal.not_streaming")
JUDGED = ("wal.lag", "wal.retained", "wal.not_streaming")  # opened and resolved by check_wal
NOT_STREAMING_GRACE = timedelta(minutes=5)  # as the Prometheus rule's `for`
# The start counts as a last word: streamers need a moment after a (re)start of the fleet.
STARTED_AT = utcnow()


@dataclass(frozen=True)
class WalStatus:
    namespace: str
    service: str
    slot: str | None  # None: no streamer ever ran
    holder: str | None  # the streamer streaming it now (`host pid N`)
    streaming: bool  # a holder said something within a few ship intervals
    server_lsn: int | None
    shipped_lsn: int | None
    shipped_at: datetime | None
    lag_bytes: int | None
    lag_seconds: float | None  # since everything the server wrote was last shipped
    retained_bytes: int | None
    wal_status: str | None
    last_segment: str | None  # the newest shipped segment's name (`.partial` when growing)
    gaps: int
    last_gap: str | None  # its reason
    last_gap_at: datetime | None
    # The last gap was not followed by a successful backup of the service: nothing after it
    # is recoverable yet (wal.gap is open).
    window_closed: bool
    error: str | None
    updated_at: datetime | None


def pitr_services(fleet: Fleet) -> list[tuple[str, str]]:
    """(namespace, service) of every `pitr` service configured, sorted."""
    return sorted(
        (namespace, name)
        for namespace, services in fleet.config.namespaces.items()
        for name, spec in services.items()
        if spec.pitr
    )


def wal_report(
    fleet: Fleet,
    *,
    now: datetime | None = None,
    only: Collection[tuple[str, str]] | None = None,
) -> list[WalStatus]:
    """Each `pitr` service's streaming (those of `only`, if given)."""
    now = now or utcnow()
    fresh = 3 * fleet.settings.wal_ship_interval + fleet.settings.wal_lock_ttl
    report = []
    with session_scope(fleet.settings.database_url) as session:
        streams = {(row.namespace, row.service): row for row in wal.wal_streams(session)}
        for namespace, service in pitr_services(fleet):
            if only is not None and (namespace, service) not in only:
                continue
            row = streams.get((namespace, service))
            newest = wal.newest_wal_file(session, namespace=namespace, service=service)
            gaps = wal.wal_gaps(session, namespace=namespace, service=service)
            last_gap = gaps[-1] if gaps else None
            window_closed = last_gap is not None and not wal.backed_up_since(
                session, namespace=namespace, service=service, moment=last_gap.detected_at
            )
            lag_bytes = lag_seconds = None
            if row is not None and row.server_lsn is not None:
                lag_bytes = max(0, row.server_lsn - (row.shipped_lsn or 0))
            if row is not None and row.caught_up_at is not None:
                lag_seconds = max(0.0, (now - row.caught_up_at).total_seconds())
            report.append(
                WalStatus(
                    namespace=namespace,
                    service=service,
                    slot=row.slot if row else None,
                    holder=row.holder if row else None,
                    streaming=bool(
                        row and row.holder and (now - row.updated_at).total_seconds() <= fresh
                    ),
                    server_lsn=row.server_lsn if row else None,
                    shipped_lsn=row.shipped_lsn if row else None,
                    shipped_at=row.shipped_at if row else None,
                    lag_bytes=lag_bytes,
                    lag_seconds=lag_seconds,
                    retained_bytes=row.retained_bytes if row else None,
                    wal_status=row.wal_status if row else None,
                    last_segment=(
                        newest.segment + (".partial" if newest.partial else "") if newest else None
                    ),
                    gaps=len(gaps),
                    last_gap=last_gap.reason if last_gap else None,
                    last_gap_at=last_gap.detected_at if last_gap else None,
                    window_closed=window_closed,
                    error=row.error if row else None,
                    updated_at=row.updated_at if row else None,
                )
            )
    return report


def check_wal(
    fleet: Fleet,
    *,
    now: datetime | None = None,
    only: Collection[tuple[str, str]] | None = None,
) -> list[WalStatus]:
    """Open or resolve each `pitr` service's wal.lag, wal.retained and wal.not_streaming
    (those of `only`, if given), and resolve its wal.gap once a backup succeeded after the
    gap; returns the report judged."""
    now = now or utcnow()
    try:
        report = wal_report(fleet, now=now, only=only)
    except Exception:
        log.exception("could not judge the WAL streaming")
        return []
    alerter = alerter_for(fleet)
    rpo = fleet.settings.wal_rpo_seconds
    limit = fleet.settings.wal_slot_max_retained
    for item in report:
        lagging = item.lag_seconds is not None and item.lag_seconds > rpo
        lag_text = (
            f"Backfleet: the WAL of service {item.service} of namespace {item.namespace} is "
            f"shipped {span(item.lag_seconds or 0)} behind the server (WAL_RPO is {span(rpo)}; "
            f"{'a streamer is running' if item.streaming else 'no streamer is running'})"
        )
        _toggle(alerter, item, "wal.lag", lag_text if lagging else None)
        retained = item.retained_bytes is not None and item.retained_bytes > limit
        retained_text = (
            f"Backfleet: replication slot {item.slot} of service {item.service} (namespace "
            f"{item.namespace}) holds {_mib(item.retained_bytes or 0)} of WAL on the database "
            f"server, over WAL_SLOT_MAX_RETAINED ({_mib(limit)}): its disk fills until the "
            "streamer drains it, or `backfleet wal drop-slot` removes it"
        )
        _toggle(alerter, item, "wal.retained", retained_text if retained else None)
        _judge_streaming(alerter, item, now)
        if item.last_gap_at is not None and not item.window_closed:
            condition = f"wal.gap:{item.namespace}:{item.service}"
            safely(partial(alerter.resolve, condition), condition)
    if only is None:
        _resolve_unconfigured(alerter, {(item.namespace, item.service) for item in report})
    return report


def _judge_streaming(alerter: Alerter, item: WalStatus, now: datetime) -> None:
    """wal.not_streaming: resolved as soon as a streamer streams the service; opened once
    nobody has for the grace; left as it is within the grace (a restart must not resolve
    it only to open it again)."""
    if item.streaming:
        _toggle(alerter, item, "wal.not_streaming", None)
        return
    since = max(STARTED_AT, item.updated_at) if item.updated_at else STARTED_AT
    if now - since < NOT_STREAMING_GRACE:
        return
    name = f"service {item.service} of namespace {item.namespace}"
    if item.updated_at is None:
        text = (
            f"Backfleet: nobody streams the WAL of {name}: no `backfleet wal` has ever "
            "streamed it, so it has no recoverable window. Is `backfleet wal` running with "
            "this services file, and can it reach Redis and the server?"
        )
    else:
        text = (
            f"Backfleet: nobody streams the WAL of {name} since "
            f"{item.updated_at:%Y-%m-%d %H:%M} UTC: is `backfleet wal` running, and can it "
            "reach Redis, the catalog and the server? Meanwhile the window stops growing and "
            "the slot keeps the WAL on the database server"
            + (f" (its last error: {item.error})" if item.error else "")
        )
    _toggle(alerter, item, "wal.not_streaming", text)


def _resolve_unconfigured(alerter: Alerter, judged: set[tuple[str, str]]) -> None:
    """Close the judged wal.* alerts of services that are no longer `pitr` here."""
    for event in JUDGED:
        prefix = f"{event}:"

        def close(prefix: str = prefix) -> None:
            for condition in alerter.open_conditions(prefix):
                namespace, _, service = condition.removeprefix(prefix).partition(":")
                if (namespace, service) not in judged:
                    log.info("closing alert %s: the service is no longer pitr", condition)
                    alerter.resolve(condition)

        safely(close, prefix)


def open_gap_alert(fleet: Fleet, namespace: str, service: str, text: str) -> None:
    """wal.gap for the service (open until a backup succeeds after the gap)."""
    alert = AlertEvent(event="wal.gap", text=text, namespace=namespace, service=service)
    alerter = alerter_for(fleet)
    condition = f"wal.gap:{namespace}:{service}"
    safely(lambda: alerter.open(condition, alert), condition)


def _toggle(alerter: Alerter, item: WalStatus, event: str, text: str | None) -> None:
    condition = f"{event}:{item.namespace}:{item.service}"
    if text is None:
        safely(lambda: alerter.resolve(condition), condition)
        return
    alert = AlertEvent(event=event, text=text, namespace=item.namespace, service=item.service)
    safely(lambda: alerter.open(condition, alert), condition)


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:.0f} MiB"

"""Test restores (drills): restore backups into scratch targets, time them, and compare
what the scratch holds with what the manifest recorded at backup time.

- PostgreSQL: into a scratch database on the service's server (the backup
  role needs CREATEDB); per-table row counts must equal those taken in the
  dump's own snapshot. A base backup (`pitr = true`, format pgbase) goes there
  through a scratch PostgreSQL (workers/pitr/base_restore.py), recovered to a random
  moment of the service's recoverable window that the backup serves, its WAL fetched and
  verified (workers/pitr/drill_moment.py; to the backup's consistent point when no moment
  can be reached from it, the row says why); the recovery must have reached the moment
  (pitr/replay.py), and the scratch database must hold the scratch server's counts.
- SQLite: into a scratch file; `PRAGMA integrity_check` must pass and the
  per-table row counts must match.
- Directory: into a scratch folder; per volume, the file count, bytes and the
  digest of every file's path, size and content hash (`files_blake3`, or
  `files_sha256` in manifests written before BLAKE3) must match.
- Command: through the service's `test_restore_command`, into the scratch named by
  $BACKFLEET_SCRATCH (sources/command_drill.py); its printed counts must equal
  those its `count_command` recorded. Without `test_restore_command` a command
  service is not drilled, and `backfleet report` says so.

Which backups a run drills is operations/drill_plan.py (each service on its own
`test_restore` cadence, every retained backup within TEST_RESTORE_PERIOD); an
explicit timestamp drills that backup's every service that can be. What a run records is
operations/drill_record.py: each drill is a
`recovery_runs` row (its duration, counts expected and found, the RTO it is judged
by); each backup drilled is also a `verifications` row (kind `restore`) whose failure
marks the backup `verified: Failed` and is alerted as `verify.failed`, as before;
the drill alerts (drill.failed, drill.rto_missed, drill.overdue) follow from the
rows (monitoring/drill_alerts.py). Scratch targets are removed whatever happens;
the live data is never touched. Archived artifacts (operations/tiers.py) are asked
back from the store first, all at once, and the drills wait for them
(transfer/rehydration.py), as a restore does; a drill's time starts at its first byte.
"""

import logging
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from workers.catalog.db import session_scope
from workers.catalog.models import FAILED, SUCCESS
from workers.catalog.tiers import record_storage_classes
from workers.errors import reason_of
from workers.fleet import Fleet
from workers.monitoring.drill_alerts import check_drills
from workers.operations.drill_plan import plan_drills
from workers.operations.drill_record import DrillResult, RestoreTestResult, record_drills
from workers.operations.locks import being_read
from workers.pitr.drill_moment import DrillMoment, aim_drill, replayed_to
from workers.pitr.restore_source import checked_facts, drill_source
from workers.redact import redact
from workers.repository.authenticity import load_manifest
from workers.repository.manifest import ArtifactEntry
from workers.services_config import ServiceSpec
from workers.sources import PGBASE, source_class
from workers.sources.base import recorded_counts
from workers.timestamps import utcnow
from workers.transfer import crypto
from workers.transfer.download import restore_artifacts
from workers.transfer.rehydration import RehydrationWait, wait_until_readable

log = logging.getLogger(__name__)
RETENTION_WAIT = 600  # seconds a test restore waits for a retention pass of its namespace
# A drill's restoring tool (a command kind's) is stopped after twice the service's RTO, at
# least this long: by then it has missed its objective, and the other drills should run.
MIN_TIME_LIMIT = 600

Clock = Callable[[], datetime]


def run_restore_tests(
    fleet: Fleet,
    *,
    namespace: str | None = None,
    timestamp: str | None = None,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> list[RestoreTestResult]:
    """The due drills of each configured namespace (or of `namespace`), or every service of
    backup `timestamp`. `now` (default: the clock) decides what is due and stamps the rows;
    `rng` draws the moments pitr services are drilled to (a test seeds it)."""
    clock = _clock(now)
    rng = rng or random.Random()
    namespaces = [namespace] if namespace else sorted(fleet.config.namespaces)
    results = []
    for ns in namespaces:
        plan: dict[str, list[str] | None] = (
            {timestamp: None} if timestamp else dict(plan_drills(fleet, namespace=ns, now=clock()))
        )
        for stamp, services in plan.items():
            results.append(
                run_restore_test(
                    fleet, namespace=ns, timestamp=stamp, services=services, now=clock, rng=rng
                )
            )
    check_drills(fleet, namespaces=namespaces, now=clock())
    return results


def run_restore_test(
    fleet: Fleet,
    *,
    namespace: str,
    timestamp: str,
    services: list[str] | None = None,
    now: Clock | None = None,
    rng: random.Random | None = None,
) -> RestoreTestResult:
    """Drill `services` (default: every one that can be) of one backup, marked as being
    read so retention keeps it (operations/retention/)."""
    clock = now or utcnow
    with being_read(fleet.settings, namespace, timestamp, wait=RETENTION_WAIT):
        return _run_restore_test(
            fleet, namespace, timestamp, services, clock, rng or random.Random()
        )


def _run_restore_test(
    fleet: Fleet,
    namespace: str,
    timestamp: str,
    services: list[str] | None,
    clock: Clock,
    rng: random.Random,
) -> RestoreTestResult:
    keyring = crypto.Keyring.from_settings(fleet.settings)
    tested: list[str] = []
    skipped: list[str] = []
    errors: list[str] = []
    drills: list[DrillResult] = []
    started = clock()
    try:
        trusted = load_manifest(fleet, namespace=namespace, timestamp=timestamp, store=fleet.store)
        manifest = trusted.manifest
        specs = fleet.config.services_of(namespace)
        planned: list[tuple[str, ServiceSpec, list[ArtifactEntry]]] = []
        for service in manifest.services():
            entries = manifest.artifacts_of(service)
            spec = specs.get(service)
            kind = str(entries[0].source.get("kind") or (spec.kind if spec else ""))
            if (
                spec is None
                or spec.kind != kind
                or source_class(kind).restore_test_unavailable(spec) is not None
            ):
                skipped.append(service)
                continue
            if services is not None and service not in services:
                continue  # not due, or drilled from another backup this run
            planned.append((service, spec, entries))
        keys = [entry.key for _, _, entries in planned for entry in entries]
        _rehydrate(fleet, namespace, timestamp, keys)
        for service, spec, entries in planned:
            drill = _drill(fleet, namespace, timestamp, service, spec, entries, keyring, clock, rng)
            drills.append(drill)
            if drill.error:
                errors.append(f"{service}: {drill.error}")
            else:
                tested.append(service)
    except Exception as exc:
        reason = redact(reason_of(exc), fleet.secrets())
        errors.append(reason)
        # The planned services' drills failed with it: their evidence says so.
        for service in services or []:
            if all(d.service != service for d in drills):
                drills.append(_failed_drill(fleet, namespace, service, started, reason, clock))
    error = redact("; ".join(errors), fleet.secrets()) or None
    result = RestoreTestResult(
        namespace, timestamp, FAILED if error else SUCCESS, tested, skipped, error, drills=drills
    )
    log.info(
        "test restore of %s/%s: %s%s",
        namespace,
        timestamp,
        result.status,
        f": {error}" if error else "",
    )
    record_drills(fleet, result)
    return result


def _rehydrate(fleet: Fleet, namespace: str, timestamp: str, keys: list[str]) -> None:
    """Every archived artifact asked back at once and waited for; the class a rehydration
    left each in (Azure: Hot) recorded."""
    moved = wait_until_readable(fleet.store, keys, RehydrationWait.from_settings(fleet.settings))
    if moved:
        with session_scope(fleet.settings.database_url) as session:
            record_storage_classes(
                session, namespace=namespace, timestamp=timestamp, classes=moved, since=utcnow()
            )


def _drill(
    fleet: Fleet,
    namespace: str,
    timestamp: str,
    service: str,
    spec: ServiceSpec,
    entries: list[ArtifactEntry],
    keyring: crypto.Keyring,
    clock: Clock,
    rng: random.Random,
) -> DrillResult:
    """Restore one service into its kind's scratch target, timed, then run its check (a
    pitr service's base backup: to a moment, pitr/drill_moment.py)."""
    rto = fleet.config.policy_of(namespace, service, fleet.settings).rto
    facts: list[Mapping[str, Any]] = [entry.source for entry in entries]
    work = fleet.settings.backfleet_work_dir
    scratch = Path(tempfile.mkdtemp(prefix="backfleet-restore-test-", dir=work))
    started, seconds, read = clock(), 0.0, 0
    found: dict[str, int] | None = None
    error = None
    moment, replayed = DrillMoment(), None

    def count(size: int) -> None:
        nonlocal read
        read += size

    try:
        target = source_class(spec.kind).restore_test_target(
            spec, scratch, time_limit=max(2 * rto, MIN_TIME_LIMIT)
        )
        assert target is not None  # restore_test_unavailable said it can be drilled
        with target as restore:
            began = time.monotonic()
            # A base backup goes into the scratch database through a scratch server.
            destination = drill_source(
                restore.target, entries[0], fleet.settings, timeout=max(2 * rto, MIN_TIME_LIMIT)
            )
            if entries[0].format == PGBASE:  # to a moment its WAL reaches, fetched first
                moment = aim_drill(
                    destination,
                    fleet,
                    namespace=namespace,
                    service=service,
                    timestamp=timestamp,
                    rng=rng,
                    on_read=count,
                )
            try:
                restore_artifacts(
                    store=fleet.store,
                    entries=entries,
                    source=destination,
                    keyring=keyring,
                    on_read=count,
                )
            finally:
                seconds = time.monotonic() - began
            facts = checked_facts(destination, facts)
            try:
                restore.check(facts)
            finally:
                found = dict(restore.found) or None
            replayed = replayed_to(destination, moment)  # the recovery reached the moment
    except Exception as exc:
        error = redact(reason_of(exc), fleet.secrets())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return DrillResult(
        service=service,
        status=FAILED if error else SUCCESS,
        started_at=started,
        finished_at=clock(),
        seconds=seconds,
        rto_seconds=rto,
        bytes_read=read,
        counts_expected=recorded_counts(facts),
        counts_found=found,
        error=error,
        target_time=moment.target,
        replayed_to=replayed,
        target_skipped=moment.skipped,
    )


def _failed_drill(
    fleet: Fleet, namespace: str, service: str, started: datetime, reason: str, clock: Clock
) -> DrillResult:
    """A planned drill that never reached its restore (the backup could not be read)."""
    rto = fleet.config.policy_of(namespace, service, fleet.settings).rto
    return DrillResult(service, FAILED, started, clock(), 0.0, rto, 0, None, None, reason)


def _clock(now: datetime | None) -> Clock:
    """The wall clock, or one that starts at `now` and runs as the monotonic clock does
    (so rows of a run with time injected keep their real order and durations)."""
    if now is None:
        return utcnow
    began = time.monotonic()
    return lambda: now + timedelta(seconds=time.monotonic() - began)

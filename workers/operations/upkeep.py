"""What a retention pass does to the backups it keeps: moves them colder as the policy ages
them (STORAGE_CLASSES, the design in tiers.py), holds back a deletion until its class's
billed minimum has passed, and extends their Object Lock while the policy keeps them.

Only a backup's artifacts move: its manifest stays in the store's default class, so
listing backups, reading a manifest (a restore's plan, verification, the secondary's
retention) never waits for a rehydration, and costs nothing to reach. A move is per
artifact and idempotent: the catalog records each artifact's class as soon as the store
holds it there, so a pass that dies half-way is finished by the next one.

The lock: a backup kept by its policy (a GFS rule, the newest or newest verified-good of
a service, a pin) whose objects' Object Lock retention has less than half of
AWS_S3_OBJECT_LOCK_DAYS left gets it extended to now + AWS_S3_OBJECT_LOCK_DAYS, so a
monthly backup kept 7 years stays write-once the whole time, and none stays locked much
beyond the moment its policy lets it go. A backup kept only because it is locked, or read
by a restore, is not extended (that would lock it for ever).
"""

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from workers.audit.user_events import record_system_event
from workers.catalog.db import session_scope
from workers.catalog.tiers import StoredArtifact, record_storage_class
from workers.operations import tiers
from workers.repository.manifest import backup_prefix
from workers.stores.base import ObjectStore
from workers.timestamps import parse_timestamp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Move:
    """A kept backup's artifacts that go to a colder class, and why."""

    storage_class: str
    keys: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class LockExtension:
    until: datetime
    keys: tuple[str, ...]  # every object of the backup whose lock ends too soon


@dataclass(frozen=True)
class BilledMinimum:
    """A backup retention would delete, still inside its class's billed minimum."""

    storage_class: str
    since: datetime
    ends: datetime
    days: int

    def describe(self) -> str:
        return (
            f"in {self.storage_class} since {self.since:%Y-%m-%d}: its {self.days}-day "
            f"minimum ends {self.ends:%Y-%m-%d}"
        )


def plan_moves(
    store: ObjectStore,
    mapping: Mapping[str, str],
    keeping: Mapping[str, Collection[str]],
    stored: Mapping[str, Sequence[StoredArtifact]],
    *,
    leave: Collection[str] = (),
    now: datetime | None = None,
) -> dict[str, Move]:
    """Each kept backup whose warmest keeping rule wants a colder class than some of its
    artifacts are in (tiers.wanted_class, tiers.is_colder); `leave`: timestamps not to
    touch (read by a restore). An artifact still inside its class's billed minimum at
    `now` waits: moving it out early is billed as if it had stayed (S3 charges the rest of
    STANDARD_IA's 30 days, Azure Cool's 30 and Cold's 90), so it moves on a later pass."""
    moves: dict[str, Move] = {}
    if not mapping or not store.storage_classes:
        return moves
    for stamp, keepers in sorted(keeping.items()):
        wanted = tiers.wanted_class(keepers, mapping, store.storage_classes)
        if wanted is None or stamp in leave:
            continue
        keys = tuple(
            artifact.key
            for artifact in stored.get(stamp, ())
            if tiers.is_colder(wanted, artifact.storage_class, store.storage_classes)
            and not _billed_minimum_ahead(store, artifact, now)
        )
        if keys:
            rules = [rule for rule in tiers.RULES if rule in keepers]
            others = sorted(set(keepers) - set(rules))  # a pin
            moves[stamp] = Move(
                wanted,
                keys,
                f"kept by {', '.join(rules + others)}: its warmest rule is {rules[0]} "
                f"({rules[0]}={wanted} in STORAGE_CLASSES)",
            )
    return moves


def _billed_minimum_ahead(
    store: ObjectStore, artifact: StoredArtifact, now: datetime | None
) -> bool:
    ends = tiers.deletable_from(artifact.storage_class, artifact.since, store.min_storage_days)
    return now is not None and ends is not None and ends > now


def billed_minimum(
    store: ObjectStore, artifacts: Sequence[StoredArtifact], now: datetime
) -> BilledMinimum | None:
    """The latest end, still to come, of a billed minimum among the backup's artifacts."""
    latest: BilledMinimum | None = None
    for artifact in artifacts:
        ends = tiers.deletable_from(artifact.storage_class, artifact.since, store.min_storage_days)
        if ends is None or ends <= now or (latest is not None and ends <= latest.ends):
            continue
        assert artifact.storage_class is not None and artifact.since is not None
        days = store.min_storage_days[artifact.storage_class]
        latest = BilledMinimum(artifact.storage_class, artifact.since, ends, days)
    return latest


def plan_lock_extensions(
    store: ObjectStore,
    namespace: str,
    stamps: Collection[str],
    *,
    days: int,
    now: datetime,
) -> dict[str, LockExtension]:
    """Each backup of `stamps` with an object whose Object Lock ends in less than half of
    `days` (or that has none). A backup younger than half of `days` is not looked at: its
    objects were written with `days` of retention (one HEAD per object of the others)."""
    found: dict[str, LockExtension] = {}
    if not store.object_lock or days <= 0:
        return found
    half = timedelta(days=days) / 2
    for stamp in sorted(stamps):
        if parse_timestamp(stamp) + half > now:
            continue
        keys = tuple(
            info.key
            for info in store.list(backup_prefix(namespace, stamp))
            if _ends_soon(store.locked_until(info.key), now, half)
        )
        if keys:
            found[stamp] = LockExtension(now + timedelta(days=days), keys)
    return found


def _ends_soon(until: datetime | None, now: datetime, half: timedelta) -> bool:
    return until is None or until - now < half


def move(
    store: ObjectStore,
    database_url: str,
    *,
    namespace: str,
    timestamp: str,
    planned: Move,
    now: datetime,
) -> None:
    """Move the artifacts, recording each in the catalog as soon as it is there; then the
    audit event. The first failure stops the backup's move (the next pass goes on)."""
    for key in planned.keys:
        store.set_storage_class(key, planned.storage_class)
        with session_scope(database_url) as session:
            record_storage_class(
                session,
                namespace=namespace,
                timestamp=timestamp,
                keys=[key],
                storage_class=planned.storage_class,
                since=now,
            )
    log.info(
        "retention: moved %s/%s to %s (%d objects; its manifest stays): %s",
        namespace,
        timestamp,
        planned.storage_class,
        len(planned.keys),
        planned.reason,
    )
    record_system_event(
        namespace=namespace,
        name="BackupStorageClassChanged",
        params={
            "namespace": namespace,
            "timestamp": timestamp,
            "storageClass": planned.storage_class,
            "objects": str(len(planned.keys)),
            "reason": planned.reason,
        },
    )


def extend_lock(
    store: ObjectStore, *, namespace: str, timestamp: str, planned: LockExtension
) -> None:
    """Extend every object's lock that ends too soon; then the audit event."""
    for key in planned.keys:
        store.extend_lock(key, planned.until)
    log.info(
        "retention: extended the Object Lock of %s/%s to %s (%d objects)",
        namespace,
        timestamp,
        planned.until.isoformat(),
        len(planned.keys),
    )
    record_system_event(
        namespace=namespace,
        name="BackupLockExtended",
        params={
            "namespace": namespace,
            "timestamp": timestamp,
            "until": planned.until.isoformat(),
            "objects": str(len(planned.keys)),
        },
    )

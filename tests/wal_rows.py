"""Catalog rows and stored objects a `pitr` service's streamer and base backups would leave,
without a PostgreSQL server: for the unit tests of WAL retention, verification and
storage accounting. WAL files are shipped through the real Shipper (zstd, age when the
fleet encrypts, SHA-256, the store, the catalog), 1 MiB segments named as PostgreSQL does."""

import os
from datetime import datetime

from workers.catalog.db import session_scope
from workers.catalog.models import SUCCESS, Artifact, Backup, WalSegment
from workers.fleet import Fleet
from workers.pitr.lsn import format_lsn, segment_name
from workers.pitr.ship import Shipper, WalFile
from workers.repository.manifest import manifest_key
from workers.timestamps import format_timestamp
from workers.transfer import crypto
from workers.transfer.parts import TransferOptions

MiB = 1024 * 1024
SID = "7300000000000000001"
PITR = """
[namespaces.app.services.pg]
kind = "postgres"
url = "postgresql://walrole:wal-pw-in-url-77@db.example/app"
pitr = true
"""


def shipper(fleet: Fleet, *, service: str = "pg", sid: str = SID) -> Shipper:
    keyring = crypto.Keyring.from_settings(fleet.settings)
    return Shipper(
        store=fleet.store,
        options=TransferOptions.from_settings(fleet.settings, keyring),
        database_url=fleet.settings.database_url,
        patience=5,
        namespace="app",
        service=service,
        system_identifier=sid,
    )


def ship(
    fleet: Fleet,
    number: int,
    *,
    partial: bool = False,
    timeline: int = 1,
    sid: str = SID,
    service: str = "pg",
    size: int = 4096,
) -> WalSegment:
    """Segment `number` (its LSNs: number MiB to number+1 MiB; a partial's end half-way)."""
    start = number * MiB
    wal = WalFile(
        stem=segment_name(timeline, start, MiB),
        data=os.urandom(size),
        timeline=timeline,
        start_lsn=start,
        end_lsn=start + (MiB // 2 if partial else MiB),
        partial=partial,
    )
    shipper(fleet, service=service, sid=sid).ship(wal)
    return row_of(fleet, wal.stem, timeline, service)


def ship_history(fleet: Fleet, timeline: int, *, at: int, sid: str = SID) -> WalSegment:
    stem = f"{timeline:08X}.history"
    data = b"1\t0/100000\tno reason\n"
    wal = WalFile(stem, data, timeline, at * MiB, at * MiB, history=True)
    shipper(fleet, sid=sid).ship(wal)
    return row_of(fleet, stem, timeline, "pg")


def row_of(fleet: Fleet, segment: str, timeline: int, service: str) -> WalSegment:
    with session_scope(fleet.settings.database_url) as session:
        row = (
            session.query(WalSegment)
            .filter_by(namespace="app", service=service, segment=segment, timeline=timeline)
            .one()
        )
        session.expunge(row)
        return row


def wal_rows(fleet: Fleet, service: str = "pg") -> list[WalSegment]:
    with session_scope(fleet.settings.database_url) as session:
        rows = (
            session.query(WalSegment)
            .filter_by(namespace="app", service=service)
            .order_by(WalSegment.start_lsn, WalSegment.timeline)
            .all()
        )
        session.expunge_all()
        return rows


def base_backup(
    fleet: Fleet,
    moment: datetime,
    *,
    start: int,
    consistent: datetime | None = None,
    sid: str = SID,
    service: str = "pg",
) -> str:
    """A successful backup at `moment` holding a base backup of `service` that starts at
    LSN `start` and is consistent at `consistent` (default `moment`); its timestamp."""
    stamp = format_timestamp(moment)
    facts = {
        "system_identifier": sid,
        "timeline": 1,
        "start_lsn": format_lsn(start),
        "end_lsn": format_lsn(start + 0x1000),
        "start_time": moment.isoformat(),
        "end_time": (consistent or moment).isoformat(),
    }
    with session_scope(fleet.settings.database_url) as session:
        backup = Backup(
            namespace="app",
            timestamp=stamp,
            status=SUCCESS,
            trigger="schedule",
            services=[service],
            created_at=moment,
            finished_at=consistent or moment,
        )
        backup.artifacts.append(
            Artifact(
                service=service,
                kind="postgres",
                key=f"app/{stamp}/{service}.pgbase.zst",
                format="pgbase",
                compression="zstd",
                status=SUCCESS,
                size=10,
                facts=facts,
            )
        )
        session.add(backup)
    fleet.store.put_object(manifest_key("app", stamp), b"{}")
    fleet.store.put_object(f"app/{stamp}/{service}.pgbase.zst", b"0123456789")
    return stamp

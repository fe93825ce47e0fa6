"""Verifying the WAL of a `pitr` service (objects shipped through the real Shipper into a
local store, a SQLite catalog): the sample, a damaged object failing and alerting until it
reads right again, a file shipped again during its check not judged; and its bytes in
`backfleet storage` and /metrics."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import workers.operations.wal_verify as wal_verify
from tests.health_fleet import make_fleet
from tests.unit.test_metrics_status import scrape
from tests.wal_rows import PITR, ship, ship_history, wal_rows
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import FAILED, SUCCESS, Alert, WalSegment
from workers.cli import main
from workers.fleet import Fleet
from workers.monitoring.storage import storage_report
from workers.operations.wal_verify import verify_wal
from workers.transfer import crypto


@pytest.fixture(autouse=True)
def _engines(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(wal_verify, "RECHECK_AFTER", 0.0)
    yield
    dispose_engines()


def pitr_fleet(tmp_path: Path, **settings: Any) -> Fleet:
    return make_fleet(tmp_path, extra_services=PITR, **settings)


def stored(tmp_path: Path, row: WalSegment) -> Path:
    return tmp_path / "store" / row.key


def alert_of(fleet: Fleet) -> Alert | None:
    with session_scope(fleet.settings.database_url) as session:
        row = (
            session.query(Alert)
            .filter_by(event="wal.verify_failed")
            .order_by(Alert.id.desc())
            .first()
        )
        if row is not None:
            session.expunge(row)
        return row


def test_a_sample_newest_first_then_random_never_the_growing_partial(tmp_path: Path) -> None:
    fleet = pitr_fleet(tmp_path, wal_verify_sample=6)
    for number in range(1, 31):
        ship(fleet, number)
    growing = ship(fleet, 31, partial=True)
    (result,) = verify_wal(fleet)
    assert (result.namespace, result.service, result.status) == ("app", "pg", SUCCESS)
    assert result.files == 6 and result.bytes_read > 0 and result.failed == []
    checked = {row.start_lsn >> 20 for row in wal_rows(fleet) if row.verified == SUCCESS}
    assert {28, 29, 30} <= checked and len(checked) == 6 and 31 not in checked
    (result,) = verify_wal(fleet)  # the next pass: the newest not checked yet, then random
    checked = {row.start_lsn >> 20 for row in wal_rows(fleet) if row.verified == SUCCESS}
    assert {25, 26, 27} <= checked and growing.start_lsn >> 20 not in checked
    assert alert_of(fleet) is None
    assert verify_wal(pitr_fleet(tmp_path, wal_verify_sample=0)) == []


def test_a_damaged_object_fails_alerts_and_resolves_once_it_reads_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = pitr_fleet(tmp_path)
    rows = [ship(fleet, number) for number in range(1, 5)]
    ship_history(fleet, 2, at=0)
    path = stored(tmp_path, rows[1])
    good = path.read_bytes()
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # one bit

    monkeypatch.setattr("workers.fleet.current_fleet", lambda: fleet)
    bad = CliRunner().invoke(main, ["verify"])
    assert bad.exit_code == 1, bad.output
    assert f"Failed   app/pg WAL (5 files checked): {rows[1].segment}: " in bad.output
    (row,) = [row for row in wal_rows(fleet) if row.verified == FAILED]
    assert row.id == rows[1].id and "SHA-256" in (row.verify_error or "")
    alert = alert_of(fleet)
    assert alert is not None and alert.resolved_at is None
    assert alert.condition == "wal.verify_failed:app:pg" and rows[1].segment in alert.text

    path.write_bytes(good)  # put back (a store's replica healed it): checked again at once
    fleet = pitr_fleet(tmp_path, wal_verify_sample=1)
    (result,) = verify_wal(fleet)
    assert result.status == SUCCESS and result.failed == []
    assert all(row.verified != FAILED for row in wal_rows(fleet))
    alert = alert_of(fleet)
    assert alert is not None and alert.resolved_at is not None


def test_a_file_shipped_again_starts_unchecked(tmp_path: Path) -> None:
    fleet = pitr_fleet(tmp_path)
    ship(fleet, 1, partial=True)
    ship(fleet, 2, partial=True)  # the growing one: the first is a timeline's end, say
    (result,) = verify_wal(fleet)
    assert result.files == 1 and wal_rows(fleet)[0].verified == SUCCESS
    ship(fleet, 1)  # complete now: another object, its row follows
    (row, _) = wal_rows(fleet)
    assert (row.partial, row.verified, row.verified_at) == (False, None, None)


def test_a_file_that_decodes_short_fails(tmp_path: Path) -> None:
    fleet = pitr_fleet(tmp_path)
    row = ship(fleet, 1)
    with session_scope(fleet.settings.database_url) as session:
        found = session.get(WalSegment, row.id)
        assert found is not None
        found.source_size += 1
    (result,) = verify_wal(fleet)
    assert result.status == FAILED and "decodes to 4096 bytes" in result.failed[0]


def test_encrypted_wal_is_decrypted_and_read_to_its_end(tmp_path: Path) -> None:
    fleet = pitr_fleet(tmp_path, backup_encryption_key=crypto.generate_key())
    row = ship(fleet, 1)
    assert row.key.endswith(".zst.enc") and row.encryption is not None
    (result,) = verify_wal(fleet)
    assert result.status == SUCCESS and result.files == 1
    path = stored(tmp_path, row)
    path.write_bytes(path.read_bytes()[:-10])
    (result,) = verify_wal(fleet)
    assert result.status == FAILED


def test_a_file_shipped_again_during_its_check_is_not_judged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = pitr_fleet(tmp_path)
    row = ship(fleet, 1)
    stored(tmp_path, row).write_bytes(b"rewritten by the streamer")

    def shipped_again(_seconds: float) -> None:  # its row follows a moment later
        with session_scope(fleet.settings.database_url) as session:
            found = session.get(WalSegment, row.id)
            assert found is not None
            found.sha256, found.verified = "f" * 64, None

    monkeypatch.setattr(wal_verify.time, "sleep", shipped_again)
    (result,) = verify_wal(fleet)
    assert result.status == SUCCESS and result.files == 0
    assert wal_rows(fleet)[0].verified is None and alert_of(fleet) is None


def test_the_wal_counts_in_storage_and_metrics(tmp_path: Path) -> None:
    fleet = pitr_fleet(tmp_path, storage_budget_bytes=1)
    rows = [ship(fleet, number) for number in range(1, 4)]
    rows.append(ship_history(fleet, 2, at=0))
    (app,) = [item for item in storage_report(fleet) if item.namespace == "app"]
    (line,) = [row for row in app.services if row.kind == "wal"]
    total = sum(row.size for row in rows)
    assert (line.service, line.objects, line.size) == ("pg", 4, total)
    assert app.size == total and app.over_budget  # the budget counts it
    samples = scrape(fleet)
    labels = (("kind", "wal"), ("namespace", "app"), ("service", "pg"), ("tier", "local"))
    assert samples[("backfleet_stored_bytes", labels)] == total


def test_the_scheduled_verification_reads_the_wal_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.verify import verify_backups

    fleet = pitr_fleet(tmp_path)
    ship(fleet, 1)
    ship(fleet, 2)
    monkeypatch.setattr("tasks.verify.current_fleet", lambda: fleet)
    answer = verify_backups()
    assert (answer["walVerified"], answer["walFailed"]) == (2, [])

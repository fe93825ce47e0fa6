"""The small pieces of WAL streaming: LSNs and file names as PostgreSQL spells them, the spool
and its seed, slot names, the catalog's record of shipped files and its holes, the flush
samples a stream's `caught_up_at` is judged against."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import WalSegment
from workers.catalog.wal import WalConflict, holes, record_wal_file, shipped_end
from workers.pitr.flushes import FlushSamples
from workers.pitr.lsn import (
    format_lsn,
    history_timeline,
    parse_lsn,
    parse_segment_name,
    segment_name,
    segment_start,
)
from workers.pitr.slot import slot_name
from workers.pitr.spool import Spool, valid_end
from workers.repository.wal_layout import wal_key, wal_prefix

MiB = 1024 * 1024
SIXTEEN = 16 * MiB


def test_lsns_and_segment_names_as_postgresql_spells_them() -> None:
    assert parse_lsn("16/B374D848") == 0x16B374D848
    assert format_lsn(0x16B374D848) == "16/B374D848"
    assert format_lsn(0) == "0/0"
    # pg_walfile_name('16/B374D848') on timeline 1 with 16 MiB segments
    assert segment_name(1, parse_lsn("16/B374D848"), SIXTEEN) == "0000000100000016000000B3"
    assert parse_segment_name("0000000100000016000000B3", SIXTEEN) == (1, 0x16B3000000)
    # 1 MiB segments: 4096 per `xlogid`
    assert segment_name(2, 0x1_0030_0000, MiB) == "000000020000000100000003"
    assert parse_segment_name("000000020000000100000003", MiB) == (2, 0x1_0030_0000)
    assert segment_start(0x16B374D848, SIXTEEN) == 0x16B3000000
    assert history_timeline("0000000A.history") == 10
    for bad in ("00000001000000000000000G", "0000000100000000000000011", "x.history"):
        with pytest.raises(ValueError):
            parse_segment_name(bad, SIXTEEN) if "history" not in bad else history_timeline(bad)


def test_slot_names_fit_postgresql() -> None:
    assert slot_name("team-a", "main-db") == "backfleet_team_a_main_db"
    long = slot_name("n" * 63, "s" * 63)
    assert len(long) == 63 and long.startswith("backfleet_nnn")
    assert long != slot_name("n" * 63, "s" * 62 + "t")  # the digest tells them apart


def test_keys_sit_under_the_namespace_s_wal_folder() -> None:
    assert wal_prefix("app") == "app/wal/"
    assert wal_key("app", "db", "000000010000000000000003", encrypted=False) == (
        "app/wal/db/000000010000000000000003.zst"
    )
    assert wal_key("app", "db", "000000010000000000000003.partial", encrypted=True) == (
        "app/wal/db/000000010000000000000003.partial.zst.enc"
    )


def test_the_spool_seeds_a_zero_filled_partial_and_sorts_what_it_finds(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", MiB)
    spool.reset()
    name = spool.seed(1, 0x350_0042)
    assert name == "000000010000000000000035.partial"
    seeded = spool.directory / name
    assert seeded.stat().st_size == MiB and valid_end(seeded.read_bytes()) == 0
    (spool.directory / "000000010000000000000034").write_bytes(b"x" * MiB)
    (spool.directory / "000000020000000000000035.partial").write_bytes(b"\0" * MiB)
    (spool.directory / "00000002.history").write_text("1\t0/35000A0\tno recovery target\n")
    (spool.directory / "00000003.history.tmp").write_text("being written")
    assert [f.name for f in spool.completed()] == ["000000010000000000000034"]
    partials = spool.partials()
    assert [(f.timeline, f.stem) for f in partials] == [
        (1, "000000010000000000000035"),
        (2, "000000020000000000000035"),
    ]
    assert [(f.timeline, f.stem) for f in spool.histories()] == [(2, "00000002.history")]
    spool.reset()
    assert list(spool.directory.iterdir()) == []


def test_the_valid_end_is_after_the_last_written_byte() -> None:
    assert valid_end(b"abc" + b"\0" * 100) == 3
    assert valid_end(b"\0" * 10) == 0
    assert valid_end(b"a\0b" + b"\0" * 5) == 3


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    upgrade_catalog(url)
    yield url
    dispose_engines()


def row(
    segment: int, *, partial: bool = False, end: int | None = None, system: str = "1"
) -> WalSegment:
    start = segment * MiB
    return WalSegment(
        namespace="app",
        service="db",
        system_identifier=system,
        timeline=1,
        segment=segment_name(1, start, MiB),
        start_lsn=start,
        end_lsn=end if end is not None else start + MiB,
        partial=partial,
        key=f"app/wal/db/{segment}" + (".partial" if partial else ""),
        size=10,
        source_size=MiB,
        sha256="0" * 64,
    )


def test_a_partial_becomes_complete_and_never_back(catalog: str) -> None:
    with session_scope(catalog) as session:
        assert record_wal_file(session, row=row(3, partial=True, end=3 * MiB + 100)).kept
        done = record_wal_file(session, row=row(3))
        assert done.kept and done.replaced_key == "app/wal/db/3.partial"
        again = record_wal_file(session, row=row(3, partial=True, end=3 * MiB + 50))
        assert not again.kept  # the stray partial is the caller's to delete
        (stored,) = session.query(WalSegment).all()
        assert not stored.partial and stored.end_lsn == 4 * MiB
        assert shipped_end(session, namespace="app", service="db", system_identifier="1") == 4 * MiB
        with pytest.raises(WalConflict, match="re-initialised"):
            record_wal_file(session, row=row(3, system="2"))


def test_holes_between_shipped_segments(catalog: str) -> None:
    with session_scope(catalog) as session:
        for number in (1, 2, 4):
            record_wal_file(session, row=row(number))
        record_wal_file(session, row=row(5, partial=True, end=5 * MiB + 10))
        found = holes(session, namespace="app", service="db", system_identifier="1")
        assert found == [(3 * MiB, 4 * MiB)]


def test_the_timeline_of_a_position_follows_the_server_s_history() -> None:
    from workers.pitr.timelines import parse_history, timeline_of

    history = parse_history(
        "1\t0/C0751E\tno recovery target specified\n\n# a comment\n2\t1/200\tbefore 2026-03-02\n"
    )
    assert history == [(1, 0xC0751E), (2, 0x1_0000_0200)]
    assert timeline_of(0xC00000, 3, history) == 1  # the segment the switch is in: still on 1
    assert timeline_of(0xC0751E, 3, history) == 2
    assert timeline_of(0x1_0000_0200, 3, history) == 3
    assert timeline_of(5, 1, []) == 1


def test_caught_up_is_the_newest_sampled_moment_the_shipped_wal_reaches() -> None:
    start = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    samples = FlushSamples()
    for tenth, flushed in enumerate((100, 180, 180, 260, 340)):
        samples.add(start + timedelta(seconds=tenth / 10), flushed)
    assert samples.covered_by(None) is None
    assert samples.covered_by(99) is None  # not even the oldest: nothing is vouched for
    # A commit record's last bytes are zeros the shipped end does not see: 7 short of 260.
    assert samples.covered_by(253) == start + timedelta(seconds=0.2)
    assert samples.covered_by(253) is None  # what it covered is gone; nothing newer is
    assert samples.covered_by(400) == start + timedelta(seconds=0.4)

"""The recoverable window of a `pitr` service from the catalog's facts (workers/pitr/window.py)
and the WAL a restore to a moment fetches (workers/pitr/wal_fetch.py), on made-up rows."""

from datetime import UTC, datetime, timedelta

import pytest

from workers.catalog.models import WalGap, WalStream
from workers.pitr.wal_fetch import wal_to_fetch
from workers.pitr.window import BaseBackup, WalRef, Window, compute_window
from workers.timestamps import format_moment, parse_moment

SEG = 16 * 1024 * 1024
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CLUSTER = "7340000000000000001"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def segment(
    number: int, *, shipped: float, timeline: int = 1, partial_end: int | None = None
) -> WalRef:
    start = number * SEG
    name = f"{timeline:08X}{0:08X}{number:08X}"
    return WalRef(
        segment=name,
        kind="segment",
        timeline=timeline,
        system_identifier=CLUSTER,
        start_lsn=start,
        end_lsn=start + (partial_end if partial_end is not None else SEG),
        partial=partial_end is not None,
        key=f"app/wal/db/{name}{'.partial' if partial_end is not None else ''}.zst",
        size=1000,
        source_size=SEG,
        sha256="0" * 64,
        encryption=None,
        shipped_at=at(shipped),
    )


def history(timeline: int) -> WalRef:
    name = f"{timeline:08X}.history"
    return WalRef(
        segment=name,
        kind="history",
        timeline=timeline,
        system_identifier=CLUSTER,
        start_lsn=0,
        end_lsn=0,
        partial=False,
        key=f"app/wal/db/{name}.zst",
        size=50,
        source_size=40,
        sha256="1" * 64,
        encryption=None,
        shipped_at=T0,
    )


def base(stamp: str, start_segment: int, *, start: float, end: float) -> BaseBackup:
    return BaseBackup(
        timestamp=stamp,
        system_identifier=CLUSTER,
        start_lsn=start_segment * SEG + 40,
        end_lsn=start_segment * SEG + 4000,
        start_time=at(start),
        end_time=at(end),
    )


def stream(shipped_lsn: int, caught_up: float) -> WalStream:
    return WalStream(
        namespace="app",
        service="db",
        slot="s",
        system_identifier=CLUSTER,
        shipped_lsn=shipped_lsn,
        caught_up_at=at(caught_up),
    )


def window(bases: list[BaseBackup], files: list[WalRef], **kw: object) -> Window:
    return compute_window(
        namespace="app",
        service="db",
        bases=bases,
        files=files,
        gaps=kw.get("gaps", []),  # type: ignore[arg-type]
        stream=kw.get("stream"),  # type: ignore[arg-type]
    )


def test_no_wal_no_window() -> None:
    found = window([base("b1", 2, start=0, end=1)], [])
    assert (found.earliest, found.latest) == (None, None)
    assert found.reason == "no WAL shipped yet" and not found.contains(at(1))


def test_window_from_the_oldest_base_backup_to_the_streamers_caught_up_moment() -> None:
    files = [segment(n, shipped=n) for n in range(2, 6)] + [
        segment(6, shipped=6.5, partial_end=500)
    ]
    bases = [base("b1", 2, start=0, end=1), base("b2", 4, start=3, end=4)]
    found = window(bases, files, stream=stream(6 * SEG + 500, 6.4))
    assert (found.earliest, found.latest) == (at(1), at(6.4))
    assert [b.timestamp for b in found.bases] == ["b1", "b2"]
    assert found.contains(at(5)) and not found.contains(at(0.5)) and not found.contains(at(7))
    assert found.base_for(at(3.9)).timestamp == "b1"  # type: ignore[union-attr]
    assert found.base_for(at(4)).timestamp == "b2"  # type: ignore[union-attr]
    assert found.describe() == (f"earliest {format_moment(at(1))}, latest {format_moment(at(6.4))}")


def test_without_the_streamers_word_the_newest_file_shipped_decides() -> None:
    files = [segment(n, shipped=n) for n in range(2, 5)] + [segment(5, shipped=5.5, partial_end=9)]
    found = window([base("b1", 2, start=0, end=1)], files)
    assert found.latest == at(5.5)
    # A word of another stretch (behind a hole) is not this run's.
    found = window([base("b1", 2, start=0, end=1)], files, stream=stream(40 * SEG, 30))
    assert found.latest == at(5.5)


def test_a_hole_in_the_segments_restarts_the_window_at_the_next_base_backup() -> None:
    files = [segment(n, shipped=n) for n in (2, 3, 5, 6, 7)]  # 4 is missing
    bases = [base("b1", 2, start=0, end=1), base("b2", 6, start=5.9, end=6.2)]
    found = window(bases, files, stream=stream(8 * SEG, 8))
    assert [b.timestamp for b in found.bases] == ["b2"]
    assert (found.earliest, found.latest) == (at(6.2), at(8))
    only_before = window(bases[:1], files, stream=stream(8 * SEG, 8))
    assert only_before.earliest is None and "continuous" in (only_before.reason or "")


def test_a_recorded_gap_cuts_the_window_until_a_base_backup_ends_after_it() -> None:
    files = [segment(n, shipped=n) for n in range(2, 9)]
    gap = WalGap(
        namespace="app",
        service="db",
        system_identifier=CLUSTER,
        start_lsn=5 * SEG,
        end_lsn=5 * SEG,
        reason="slot dropped",
        detected_at=at(5.2),
    )
    bases = [base("b1", 2, start=0, end=1)]
    cut = window(bases, files, gaps=[gap], stream=stream(9 * SEG, 9))
    assert cut.earliest is None and "gap" in (cut.reason or "")
    # A base backup whose tar was still read when the gap was seen does not count either.
    during = base("b2", 4, start=4, end=5.5)
    assert window([*bases, during], files, gaps=[gap], stream=stream(9 * SEG, 9)).earliest is None
    after = base("b3", 7, start=6.8, end=7.1)
    found = window([*bases, during, after], files, gaps=[gap], stream=stream(9 * SEG, 9))
    assert [b.timestamp for b in found.bases] == ["b3"]
    assert (found.earliest, found.latest) == (at(7.1), at(9))


def test_another_clusters_files_and_base_backups_are_not_this_window() -> None:
    old = [segment(n, shipped=n) for n in range(2, 40)]
    other = [
        WalRef(**{**ref.__dict__, "system_identifier": "1", "shipped_at": at(-100)}) for ref in old
    ]
    files = [*other, segment(3, shipped=50), segment(4, shipped=51)]
    bases = [base("b1", 3, start=49, end=49.5)]
    found = window(bases, files, stream=stream(5 * SEG, 52))
    assert (found.earliest, found.latest) == (at(49.5), at(52))
    assert {ref.system_identifier for ref in found.run} == {CLUSTER}


def test_the_wal_fetched_runs_from_the_base_backup_to_a_later_one_begun_after_the_target() -> None:
    files = [
        history(2),
        segment(1, shipped=0.5),  # before the base backup's WAL
        segment(2, shipped=1),
        segment(3, shipped=2, partial_end=100),  # the end of timeline 1
        segment(3, shipped=2.1, timeline=2),
        *[segment(n, shipped=n, timeline=2) for n in range(4, 9)],
        segment(9, shipped=9.5, timeline=2, partial_end=7),
    ]
    b1, b2 = base("b1", 2, start=0, end=1.5), base("b2", 6, start=5.5, end=6)
    found = window([b1, b2], files, stream=stream(9 * SEG + 7, 9.4))
    names = [item.name for item in wal_to_fetch(found, b1, at(4.5))]
    # History first; timeline 1's partial is left (timeline 2's copy holds it); through the
    # segment where b2 (begun after the target) starts.
    assert names == [
        "00000002.history",
        "000000010000000000000002",
        "000000020000000000000003",
        "000000020000000000000004",
        "000000020000000000000005",
        "000000020000000000000006",
    ]
    # After b2 began: the whole run, the growing segment's partial under its own name.
    fetched = wal_to_fetch(found, b1, at(9))
    assert fetched[-1].name == "000000020000000000000009" and fetched[-1].ref.partial


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-03-02T14:31:59Z", datetime(2026, 3, 2, 14, 31, 59, tzinfo=UTC)),
        ("2026-03-02t14:31:59.25z", datetime(2026, 3, 2, 14, 31, 59, 250000, tzinfo=UTC)),
        ("2026-03-02T16:31:59.1234567+02:00", datetime(2026, 3, 2, 14, 31, 59, 123456, tzinfo=UTC)),
    ],
)
def test_targets_are_rfc3339_with_an_offset(text: str, moment: datetime) -> None:
    assert parse_moment(text) == moment


@pytest.mark.parametrize(
    "text", ["2026-03-02T14:31:59", "2026-03-02", "2026-02-30T10:00:00Z", "yesterday"]
)
def test_a_moment_without_offset_or_out_of_range_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339|real moment"):
        parse_moment(text)

"""Volumes side by side: order, the shared stop, and which stored volumes a redelivery keeps."""

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from workers.repository.manifest import ArtifactEntry
from workers.sources.base import Dump
from workers.transfer.budget import PartBudget
from workers.transfer.parts import StopCheck, TransferStopped
from workers.transfer.upload import DumpFactory
from workers.transfer.volumes import VolumeSpan, back_up_volumes

WAIT = 5.0


class PlannedSource:
    """Volumes ending at the given positions; the last one goes to the end."""

    def __init__(self, boundaries: list[str]) -> None:
        self.boundaries = boundaries

    def plan_volumes(self, *, after: str | None, max_bytes: int) -> Iterator[str | None]:
        yield from (b for b in self.boundaries if after is None or b > after)
        yield None

    def dump_volume(
        self, *, after: str | None, max_bytes: int, until: str | None = None
    ) -> AbstractContextManager[Dump]:
        raise NotImplementedError  # the tests' store_volume never opens it


def entry(number: int, span: VolumeSpan) -> ArtifactEntry:
    final = span.until is None
    facts = {"after": span.after, "last": span.until or "zz", "final": final}
    return ArtifactEntry(
        service="files",
        volume=number,
        key=f"v{number}",
        format="tar",
        compression="zstd",
        size=1,
        sha256="0" * 64,
        source_size=1,
        source=facts,
    )


def test_volumes_run_side_by_side_and_come_back_in_order() -> None:
    both_running = threading.Barrier(2, timeout=WAIT)
    spans: list[VolumeSpan] = []

    def store_volume(
        number: int, open_dump: DumpFactory, span: VolumeSpan, stop: StopCheck, budget: PartBudget
    ) -> ArtifactEntry:
        spans.append(span)
        if number <= 2:
            both_running.wait()  # fails unless volumes 1 and 2 run at once
        return entry(number, span)

    entries = back_up_volumes(
        PlannedSource(["b", "d"]),
        finished=[],
        max_bytes=1,
        concurrency=2,
        part_concurrency=3,
        store_volume=store_volume,
    )

    assert [e.volume for e in entries] == [1, 2, 3]
    assert sorted(spans, key=lambda s: s.after or "") == [
        VolumeSpan(None, "b"),
        VolumeSpan("b", "d"),
        VolumeSpan("d", None),
    ]


def test_a_volume_that_ends_first_frees_its_place_while_an_older_one_still_runs() -> None:
    third_started = threading.Event()

    def store_volume(
        number: int, open_dump: DumpFactory, span: VolumeSpan, stop: StopCheck, budget: PartBudget
    ) -> ArtifactEntry:
        if number == 1:  # a long first volume: the third must start beside it
            assert third_started.wait(WAIT), "volume 3 waited for volume 1"
        if number == 3:
            third_started.set()
        return entry(number, span)

    entries = back_up_volumes(
        PlannedSource(["b", "d"]),
        finished=[],
        max_bytes=1,
        concurrency=2,
        part_concurrency=3,
        store_volume=store_volume,
    )

    assert [e.volume for e in entries] == [1, 2, 3]


def test_a_failed_volume_stops_the_one_beside_it_and_no_other_starts() -> None:
    second_started = threading.Event()
    seen: dict[int, Any] = {}

    def store_volume(
        number: int, open_dump: DumpFactory, span: VolumeSpan, stop: StopCheck, budget: PartBudget
    ) -> ArtifactEntry:
        seen[number] = "started"
        if number == 1:
            assert second_started.wait(WAIT)
            raise RuntimeError("volume 1 broke")
        second_started.set()
        for _ in range(500):  # a long volume, asking before each part
            if stop():
                seen[number] = "stopped"
                raise TransferStopped("stopped")
            threading.Event().wait(0.01)
        return entry(number, span)

    with pytest.raises(RuntimeError, match="volume 1 broke"):
        back_up_volumes(
            PlannedSource(["b", "d"]),
            finished=[],
            max_bytes=1,
            concurrency=2,
            part_concurrency=3,
            store_volume=store_volume,
        )

    assert seen == {1: "started", 2: "stopped"}


def test_a_redelivery_plans_after_the_finished_volumes() -> None:
    done = [entry(1, VolumeSpan(None, "b"))]
    spans: list[VolumeSpan] = []

    def store_volume(
        number: int, open_dump: DumpFactory, span: VolumeSpan, stop: StopCheck, budget: PartBudget
    ) -> ArtifactEntry:
        spans.append(span)
        return entry(number, span)

    entries = back_up_volumes(
        PlannedSource(["b", "d"]),
        finished=done,
        max_bytes=1,
        concurrency=2,
        part_concurrency=3,
        store_volume=store_volume,
    )

    assert entries[0] is done[0] and [e.volume for e in entries] == [1, 2, 3]
    assert spans == [VolumeSpan("b", "d"), VolumeSpan("d", None)]


def test_a_stored_volume_is_kept_only_for_the_span_planned_now() -> None:
    facts = {"after": "b", "last": "d", "final": False}
    assert VolumeSpan("b", "d").matches(facts)
    assert not VolumeSpan("b", "c").matches(facts)  # the volume would now end sooner
    assert not VolumeSpan("a", "d").matches(facts)  # or start sooner
    assert not VolumeSpan("b", "d").matches({**facts, "final": True})
    assert not VolumeSpan("b", "d").matches({"last": "d", "final": False})  # no `after` kept
    assert VolumeSpan("b", None).matches({"after": "b", "last": "x", "final": True})

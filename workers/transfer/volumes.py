"""A directory's volumes, several at once (BACKUP_VOLUME_CONCURRENCY).

Each multipart upload is one object that an S3 server may write on one thread
(rclone's does: bench/RESULTS.md, session 8), so volumes that upload side by
side keep more of the machine busy. Their boundaries come from the source's
plan (a walk that only stats entries), so volume k+1 can start before volume k
is read; they share one budget of parts in flight, so memory stays that of one
upload. When one volume fails, or the task is stopped, the others stop at their
next part and abort their uploads.

A redelivered backup passes the finished volumes that chain from the first
(each one's `after` is the `last` of the one before), and the rest is planned
from the last of them; `VolumeSpan.matches` tells whether a volume a dead
attempt stored further on holds exactly what is planned now. So no entry is
repeated or lost, however the tree changed in between.
"""

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from workers.repository.manifest import ArtifactEntry
from workers.sources.base import Dump
from workers.transfer.budget import WAKE_EVERY, PartBudget
from workers.transfer.parts import StopCheck
from workers.transfer.upload import DumpFactory


class VolumeSource(Protocol):
    def plan_volumes(self, *, after: str | None, max_bytes: int) -> Iterator[str | None]: ...

    def dump_volume(
        self, *, after: str | None, max_bytes: int, until: str | None = None
    ) -> AbstractContextManager[Dump]: ...


@dataclass(frozen=True)
class VolumeSpan:
    """The entries after `after` up to `until` (None: by size, to the end of the walk)."""

    after: str | None
    until: str | None

    def matches(self, facts: Mapping[str, Any]) -> bool:
        """Whether a stored volume's facts say it holds exactly this span."""
        if "after" not in facts or facts["after"] != self.after:
            return False
        return self.until is None or (facts.get("final") is False and facts["last"] == self.until)


# Stores one volume: (number, open_dump, span, should_stop, budget) -> its manifest entry.
StoreVolume = Callable[[int, DumpFactory, VolumeSpan, StopCheck, PartBudget], ArtifactEntry]


def back_up_volumes(
    source: VolumeSource,
    *,
    finished: Sequence[ArtifactEntry],
    max_bytes: int,
    concurrency: int,
    part_concurrency: int,
    store_volume: StoreVolume,
) -> list[ArtifactEntry]:
    """Every volume after the `finished` ones, `concurrency` at a time, in order."""
    entries = list(finished)
    budget = PartBudget(part_concurrency)
    stop = threading.Event()
    with ThreadPoolExecutor(concurrency, thread_name_prefix="volume") as pool:
        running: dict[Future[ArtifactEntry], int] = {}  # each volume's number
        done: dict[int, ArtifactEntry] = {}

        def collect(when: str) -> None:
            # Whichever volume ends first frees its place: waiting for the oldest
            # left one core idle while a later, smaller volume had already ended.
            # In slices (budget.WAKE_EVERY): the task's thread waits here.
            while True:
                ended, left = wait(running, timeout=WAKE_EVERY, return_when=when)
                if ended and (when == FIRST_COMPLETED or not left):
                    break
            for future in ended:
                done[running.pop(future)] = future.result()  # a failed volume raises here

        try:
            # Until a volume reports the walk's end: the last planned one goes by
            # size, so a tree that grew since the plan has more volumes after it.
            while not entries or not entries[-1].source.get("final", True):
                after = entries[-1].source.get("last") if entries else None
                for until in source.plan_volumes(after=after, max_bytes=max_bytes):
                    span = VolumeSpan(after, until)
                    open_dump = partial(
                        source.dump_volume, after=after, max_bytes=max_bytes, until=until
                    )
                    number = len(entries) + len(done) + len(running) + 1
                    volume = pool.submit(store_volume, number, open_dump, span, stop.is_set, budget)
                    running[volume] = number
                    if len(running) >= concurrency:
                        collect(FIRST_COMPLETED)
                    after = until
                while running:
                    collect(ALL_COMPLETED)
                entries += [done.pop(number) for number in sorted(done)]
        except BaseException:
            stop.set()  # the others abort at their next part
            wait(running)
            raise
    return entries

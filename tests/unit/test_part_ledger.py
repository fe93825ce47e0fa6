"""workers/catalog/part_ledger.py: an upload's parts reach the catalog in batches."""

import threading
from collections.abc import Callable

from workers.catalog.db import Session
from workers.catalog.part_ledger import PartLedger
from workers.stores.base import UploadedPart


def part(number: int) -> UploadedPart:
    return UploadedPart(number=number, size=5, etag=f"e{number}", sha256=f"s{number}")


class Writes:
    """Stands in for write_catalog: keeps each batch's part numbers instead of a session."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, change: Callable[[Session], None], what: str) -> None:
        recorded: list[int] = []

        class Recorder:  # the two calls record_parts makes
            def execute(self, _statement: object) -> None:
                pass

            def add(self, row: object) -> None:
                recorded.append(row.number)  # type: ignore[attr-defined]

        change(Recorder())  # type: ignore[arg-type]
        self.batches.append(recorded)


def test_parts_are_written_together_once_the_interval_has_passed() -> None:
    writes = Writes()
    ledger = PartLedger(7, writes, every=3600)
    for number in (1, 2, 3):
        ledger.add(part(number))
    assert writes.batches == []  # not due yet: no commit per part
    ledger.every = 0
    ledger.add(part(4))
    assert writes.batches == [[1, 2, 3, 4]]
    ledger.flush()  # nothing left
    assert writes.batches == [[1, 2, 3, 4]]


def test_a_part_noted_while_a_batch_is_written_waits_for_the_next_one() -> None:
    writing, release = threading.Event(), threading.Event()
    batches: list[int] = []

    def slow_write(change: Callable[[Session], None], what: str) -> None:
        writing.set()
        assert release.wait(10)
        batches.append(1)

    ledger = PartLedger(7, slow_write, every=0)
    first = threading.Thread(target=ledger.add, args=(part(1),))
    first.start()
    assert writing.wait(10)
    ledger.add(part(2))  # returns at once: another thread is writing
    release.set()
    first.join(10)
    assert batches == [1] and [p.number for p in ledger._pending] == [2]

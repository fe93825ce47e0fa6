import os
import sys

import pytest

from tasks.memory import freeze_long_lived_objects, limit_heap_fragmentation, release_free_heap


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_takes_the_malloc_settings() -> None:
    assert limit_heap_fragmentation() is True


def test_long_lived_objects_are_frozen_and_new_ones_are_not() -> None:
    import gc

    before = gc.get_freeze_count()
    try:
        frozen = freeze_long_lived_objects()
        assert frozen > before and frozen == gc.get_freeze_count()
        later = [object()]
        assert gc.is_tracked(later) and gc.get_freeze_count() == frozen  # still collectable
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_memory_goes_back_to_the_system() -> None:
    freed = [bytearray(os.urandom(2048)) for _ in range(20_000)]  # ~40 MiB of malloc's heap
    pin = [bytearray(2048) for _ in range(10)]  # above them: free() alone cannot shrink the heap
    del freed
    before = _rss_mib()

    released = release_free_heap()

    assert released is True
    assert before - _rss_mib() > 20  # MiB
    assert len(pin) == 10

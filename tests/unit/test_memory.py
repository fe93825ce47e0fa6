import sys

import pytest

from workers.memory import freeze_long_lived_objects, limit_heap_fragmentation


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

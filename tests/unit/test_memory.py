import sys

import pytest

from workers.memory import limit_heap_fragmentation


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_takes_the_malloc_settings() -> None:
    assert limit_heap_fragmentation() is True

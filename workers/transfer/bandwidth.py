"""A bandwidth limit shared by a worker's upload threads (BACKUP_MAX_BANDWIDTH).

Each transfer reserves its slot on a virtual timeline at `rate` bytes per
second and sleeps until the slot starts, so the average rate holds however
many threads send. The clock and sleep are injectable for tests.
"""

import threading
import time
from collections.abc import Callable


class BandwidthLimiter:
    def __init__(
        self,
        rate: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive; use no limiter for unlimited")
        self.rate, self._clock, self._sleep = rate, clock, sleep
        self._lock = threading.Lock()
        self._free_at = clock()

    def consume(self, amount: int) -> None:
        """Block until `amount` bytes may go."""
        with self._lock:
            now = self._clock()
            start = max(self._free_at, now)
            self._free_at = start + amount / self.rate
        if start > now:
            self._sleep(start - now)

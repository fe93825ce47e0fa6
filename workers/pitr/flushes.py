"""The server's flushed WAL position, sampled over time: what a stream's `caught_up_at` (the
window's `latest`) is judged against.

Each sample is (a moment, the server's pg_current_wal_flush_lsn() asked right after it):
every commit acknowledged before that moment lies at or before that position. So once the
shipped WAL reaches a sample's position, everything committed before its moment is in
the store, and that moment is "caught up".

Comparing with the position at the moment of shipping only is not enough on a server
that commits all the time: a commit flushed a millisecond before the question is rarely
in the received file yet, and even when it is, the file's last non-zero byte (what the
streamer can see of it) stops short of the commit record's aligned end, which is the
flushed position. Judged that way, a busy server was never caught up and `latest` stayed
where the load began. Against the samples of the last few polls, `latest` trails the
shipped data by about one poll.
"""

from collections import deque
from datetime import datetime

MAX_SAMPLES = 2400  # 10 minutes of polls: bounded when shipping stalls


class FlushSamples:
    def __init__(self) -> None:
        self._samples: deque[tuple[datetime, int]] = deque(maxlen=MAX_SAMPLES)

    def add(self, moment: datetime, flushed: int) -> None:
        self._samples.append((moment, flushed))

    def covered_by(self, shipped: int | None) -> datetime | None:
        """The newest moment whose flushed position `shipped` reaches (None: none); the
        samples up to it are dropped (a later moment covers them)."""
        found = None
        while self._samples and shipped is not None and self._samples[0][1] <= shipped:
            found = self._samples.popleft()[0]
        return found

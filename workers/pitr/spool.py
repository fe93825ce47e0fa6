"""The local folder pg_receivewal writes into, one per service, as it names its files:
`<24 hex>` a completed segment, `<24 hex>.partial` the one being received (padded with
zeros to the segment size first), `<8 hex>.history` a timeline's history.

pg_receivewal starts at the highest segment it finds there (at the start of a `.partial`,
after a complete one), so seeding the folder with a zero-filled `.partial` of the segment
holding the slot's restart_lsn makes it stream from there.
"""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from workers.pitr.lsn import (
    HISTORY_NAME,
    PARTIAL,
    SEGMENT_NAME,
    history_timeline,
    parse_segment_name,
    segment_name,
)


@dataclass(frozen=True)
class SpoolFile:
    name: str  # the file's name in the spool
    path: Path
    timeline: int
    start_lsn: int  # 0 for a history file
    partial: bool = False
    history: bool = False

    @property
    def stem(self) -> str:
        """The WAL file's own name: a segment's 24 hex digits, or `00000002.history`."""
        return self.name.removesuffix(PARTIAL)


class Spool:
    def __init__(self, directory: Path, segment_size: int) -> None:
        self.directory, self.segment_size = directory, segment_size

    def reset(self) -> None:
        """An empty folder (what a previous holder on this machine left is not trusted: the
        slot still holds everything that was not shipped)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def seed(self, timeline: int, lsn: int) -> str:
        """A zero-filled `.partial` of the segment holding `lsn`: pg_receivewal starts there."""
        name = segment_name(timeline, lsn, self.segment_size) + PARTIAL
        path = self.directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, self.segment_size)  # sparse: zeros without writing them
        finally:
            os.close(fd)
        return name

    def _files(self) -> list[SpoolFile]:
        found = []
        for path in self.directory.iterdir():
            name = path.name
            stem = name.removesuffix(PARTIAL)
            if SEGMENT_NAME.match(stem):
                timeline, start = parse_segment_name(stem, self.segment_size)
                found.append(SpoolFile(name, path, timeline, start, partial=name != stem))
            elif HISTORY_NAME.match(name):
                found.append(SpoolFile(name, path, history_timeline(name), 0, history=True))
        return sorted(found, key=lambda f: (f.start_lsn, f.timeline, f.name))

    def completed(self) -> list[SpoolFile]:
        """Complete segments, oldest first."""
        return [f for f in self._files() if not f.partial and not f.history]

    def partials(self) -> list[SpoolFile]:
        """`.partial` segments, oldest first: the last is the one growing; any before it was
        left by a timeline switch (its timeline ends inside it) and grows no more."""
        return [f for f in self._files() if f.partial]

    def histories(self) -> list[SpoolFile]:
        return [f for f in self._files() if f.history]


def valid_end(data: bytes) -> int:
    """Where the received WAL in a zero-padded segment ends: after its last non-zero byte
    (a record that ends in zeros is only counted short, never long)."""
    return len(data.rstrip(b"\0"))

"""WAL positions (LSNs) and file names, as PostgreSQL spells them.

An LSN is a byte position in the WAL, written `16/B374D848` (high/low 32 bits in hex).
A segment file is named by its timeline and segment number: `TTTTTTTT` `XXXXXXXX`
`YYYYYYYY`, 24 hex digits, where segment number = X * (2^32 / segment size) + Y.
"""

import re

SEGMENT_NAME = re.compile(r"^[0-9A-F]{24}\Z")
HISTORY_NAME = re.compile(r"^[0-9A-F]{8}\.history\Z")
PARTIAL = ".partial"


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def segment_start(lsn: int, segment_size: int) -> int:
    return lsn - lsn % segment_size


def segment_name(timeline: int, lsn: int, segment_size: int) -> str:
    """The name of the segment holding `lsn` on `timeline`."""
    per_id = 0x100000000 // segment_size
    number = lsn // segment_size
    return f"{timeline:08X}{number // per_id:08X}{number % per_id:08X}"


def parse_segment_name(name: str, segment_size: int) -> tuple[int, int]:
    """(timeline, start LSN) of a 24-hex segment name (ValueError otherwise)."""
    if not SEGMENT_NAME.match(name):
        raise ValueError(f"{name!r} is not a WAL segment name")
    per_id = 0x100000000 // segment_size
    timeline, high, low = int(name[:8], 16), int(name[8:16], 16), int(name[16:], 16)
    return timeline, (high * per_id + low) * segment_size


def history_timeline(name: str) -> int:
    """The timeline of a `00000002.history` file (ValueError otherwise)."""
    if not HISTORY_NAME.match(name):
        raise ValueError(f"{name!r} is not a timeline history file name")
    return int(name[:8], 16)

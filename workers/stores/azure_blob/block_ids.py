"""Naming an upload's blocks, and checking staged blocks against the recorded parts.

Part `number` of upload `<id>` is the block `<id>-<number:06d>`: every block id of a
blob must have the same length, as Azure requires (the SDK base64-encodes it on the
wire). Pure functions: no SDK here.
"""

import re
from collections.abc import Sequence

from workers.stores.base import UploadedPart

BLOCK_ID = re.compile(r"^(?P<upload>[0-9a-f]{32})-(?P<number>[0-9]{6})\Z")


def block_id(upload_id: str, number: int) -> str:
    """The block of part `number`: every id of an upload has the same length."""
    return f"{upload_id}-{number:06d}"


def wanted_blocks(upload_id: str, parts: Sequence[UploadedPart]) -> list[tuple[str, int]]:
    """The blocks a commit names: empty parts were never staged."""
    return [(block_id(upload_id, part.number), part.size) for part in parts if part.size]


def parse_block_id(name: str) -> tuple[str, int] | None:
    match = BLOCK_ID.match(name)
    return (match["upload"], int(match["number"])) if match else None


def block_mismatches(
    upload_id: str, parts: Sequence[UploadedPart], staged: dict[str, int]
) -> list[str]:
    """How the staged blocks differ from the recorded parts (extra blocks are fine)."""
    problems = []
    for part in parts:
        name = block_id(upload_id, part.number)
        if part.etag and part.etag != name:
            problems.append(f"part {part.number} has another block id")
        elif not part.size:
            continue  # never staged
        elif name not in staged:
            problems.append(f"part {part.number} is missing")
        elif staged[name] != part.size:
            problems.append(f"part {part.number} holds {staged[name]} bytes, not {part.size}")
    return problems

"""The test restore's check (see DirectorySource.restore_test_target): each volume's
files, bytes and files digest, recomputed over the restored tree."""

import bisect
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from workers.errors import IntegrityError
from workers.sources.directory.digest import FILE_HASH, FILE_HASHES, FileDigest
from workers.sources.directory.walk import Key, _Walk, decode_position


def check_tree(
    root: Path, facts: Sequence[Mapping[str, Any]], totals: dict[str, int] | None = None
) -> None:
    """Raise IntegrityError unless each volume restored under `root` is as recorded;
    `totals` gets the files and bytes found, all volumes summed, before the comparison."""
    algorithm = recorded_file_hash(facts[0])
    found = tree_facts(root, facts, algorithm or FILE_HASH)
    if totals is not None:
        totals["files"] = sum(files for files, _, _ in found)
        totals["bytes"] = sum(size for _, size, _ in found)
    for number, (recorded, (files, size, digest)) in enumerate(zip(facts, found, strict=True)):
        where = f"volume {number + 1}"
        if (files, size) != (recorded.get("files"), recorded.get("bytes")):
            raise IntegrityError(
                f"{where}: restored {files} files of {size} bytes, the manifest says "
                f"{recorded.get('files')} files of {recorded.get('bytes')} bytes"
            )
        if algorithm is not None and digest != recorded.get(f"files_{algorithm}"):
            raise IntegrityError(f"{where}: the restored files' names, sizes or contents differ")


def recorded_file_hash(facts: Mapping[str, Any]) -> str | None:
    """The per-file hash a directory volume's facts were recorded with, if any."""
    return next((name for name in FILE_HASHES if f"files_{name}" in facts), None)


def tree_facts(
    root: Path, facts: Sequence[Mapping[str, Any]], algorithm: str = FILE_HASH
) -> list[tuple[int, int, str]]:
    """(files, bytes, files digest) per volume, walking the tree as the backup did."""
    # Volume k holds the entries after volume k-1's `last` up to its own `last`.
    bounds: list[Key] = [decode_position(str(f["last"])) for f in facts[:-1]]
    tallies = [_Tally(algorithm) for _ in facts]
    broot = os.fsencode(root)
    walk = _Walk(broot, None)
    while (key := walk.next()) is not None:
        path = os.path.join(broot, *key)
        mode = os.lstat(path).st_mode
        if stat.S_ISDIR(mode):
            walk.enter(key)
        if stat.S_ISREG(mode):
            tallies[bisect.bisect_left(bounds, key)].add(key, path)
    return [(t.files, t.size, t.digest.hexdigest()) for t in tallies]


class _Tally:
    def __init__(self, algorithm: str) -> None:
        self.files, self.size, self.digest = 0, 0, FileDigest(algorithm)

    def add(self, key: Key, path: bytes) -> None:
        size, content = _file_hash(path, self.digest.new_hash())
        self.files += 1
        self.size += size
        self.digest.add(key, size, content)


def _file_hash(path: bytes, digest: Any) -> tuple[int, str]:
    size = 0
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()

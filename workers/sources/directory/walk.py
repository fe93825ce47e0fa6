"""The walk: which entries of a tree, in which order, and their names in the tar.

The walk order is the order of the entries' paths as tuples of byte-string
components (depth first, each folder's names sorted as bytes, the root first); a
volume's bounds are positions in it (see the package's docstring).
"""

import errno
import os

from workers.errors import SourceError

# A path's place in the walk: its components below the root, as bytes; () is the root.
Key = tuple[bytes, ...]


def encode_position(key: Key) -> str:
    """An entry's position as a JSON-safe string: the hex of its relative path's bytes."""
    return (b"/".join(key) or b".").hex()


def decode_position(position: str) -> Key:
    try:
        raw = bytes.fromhex(position)
    except ValueError:
        raise SourceError(f"{position!r} is not a volume position") from None
    if raw == b".":
        return ()
    key = tuple(raw.split(b"/"))
    if any(part in (b"", b".", b"..") for part in key):
        raise SourceError(f"{position!r} is not a volume position")
    return key


class _Walk:
    """The entries of a tree in walk order, from just after `after` (None: from the root).

    `next()` gives the next entry's key; the caller `enter()`s each folder it archived.
    Subtrees wholly before `after` are never listed; the folders holding `after` are
    listed but not given again.
    """

    def __init__(self, root: bytes, after: Key | None) -> None:
        self.root, self.after = root, after
        self._pending: list[tuple[Key, bool]] = [((), after is None)]  # a stack: (key, give?)

    def next(self) -> Key | None:
        while self._pending:
            key, give = self._pending.pop()
            if give:
                return key
            self.enter(key)  # the root or a folder holding `after`: only what follows it
        return None

    def enter(self, key: Key) -> None:
        after = self.after
        for name in sorted(_list_folder(os.path.join(self.root, *key)), reverse=True):
            child = (*key, name)
            if after is None or child > after:
                self._pending.append((child, True))
            elif child == after[: len(child)]:
                self._pending.append((child, False))


def _list_folder(path: bytes) -> list[bytes]:
    """A folder's names; none if it is gone or no longer a folder (a link is not followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a symlink since it was archived
            return []
        raise
    try:
        return [os.fsencode(name) for name in os.listdir(fd)]
    finally:
        os.close(fd)


def _arcname(key: Key) -> str:
    return os.path.join(".", *(os.fsdecode(part) for part in key))

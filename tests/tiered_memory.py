"""An in-memory store with storage classes, an archive class and rehydrations that take
a few polls: for unit tests of what retention, restores and verification do with them.
The real servers show the stores themselves (tests/integration/test_storage_tiers.py,
test_tiers_follow_retention.py and the store contract suite)."""

from collections.abc import Mapping
from typing import BinaryIO, ClassVar

from workers.errors import NotFoundError, PermanentError
from workers.stores.base import StoredFacts
from workers.stores.memory import MemoryStore


class TieredMemoryStore(MemoryStore):
    kind: ClassVar[str] = "tiered-memory"
    default_storage_class: ClassVar[str] = "STANDARD"
    storage_classes: ClassVar[tuple[str, ...]] = ("STANDARD", "STANDARD_IA", "DEEP_ARCHIVE")
    archive_classes: ClassVar[frozenset[str]] = frozenset({"DEEP_ARCHIVE"})
    min_storage_days: ClassVar[Mapping[str, int]] = {"STANDARD_IA": 30, "DEEP_ARCHIVE": 180}

    def __init__(self, *, polls: int = 0) -> None:
        super().__init__()
        self.classes: dict[str, str] = {}
        self.polls = polls  # calls of rehydrate() an archived object needs before it reads
        self.asked: dict[str, int] = {}  # key -> rehydrate() calls
        self.reads: list[str] = []  # every key opened for reading

    def storage_class_of(self, key: str) -> str:
        if key not in self.objects:
            raise NotFoundError(f"object {key} is not in the store")
        return self.classes.get(key, self.default_storage_class)

    def set_storage_class(self, key: str, storage_class: str) -> None:
        if self.storage_class_of(key) in self.archive_classes:
            raise PermanentError(f"{key} is archived: rehydrate it first")
        self.classes[key] = storage_class

    def _readable(self, key: str) -> bool:
        archived = self.storage_class_of(key) in self.archive_classes
        return not archived or self.asked.get(key, 0) > self.polls

    def rehydrate(self, key: str) -> bool:
        if self.storage_class_of(key) not in self.archive_classes:
            return True
        self.asked[key] = self.asked.get(key, 0) + 1
        return self._readable(key)

    def open_read(self, key: str) -> BinaryIO:
        self.reads.append(key)
        if key in self.objects and not self._readable(key):
            raise PermanentError(f"{key} is archived (InvalidObjectState)")
        return super().open_read(key)

    def stored_facts(self, key: str) -> StoredFacts:
        sha256 = self.stored_sha256(key)
        return StoredFacts(len(self.objects[key]), self.storage_class_of(key), sha256, {})

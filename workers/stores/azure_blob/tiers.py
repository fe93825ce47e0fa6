"""Access tiers on Azure Blob Storage: where a blob is, moving it colder (Set Blob Tier,
which keeps its bytes, metadata and name: no copy), and rehydrating an Archive blob.

A blob leaves Archive only by a rehydration to an online tier. It is rehydrated to Hot:
Hot has no minimum storage duration, and the next retention pass moves it back to the
class its policy wants (a rehydration to Cool would bill Cool's 30 days). Azure keeps no
digest of a block blob's whole content unless the writer sets one (each block was checked
by its Content-MD5 as it was staged): `stored_facts` reports the blob's Content-MD5 only
where it has one (a single-request upload, such as a manifest).
"""

from typing import Any, ClassVar

from azure.storage.blob import BlobProperties, RehydratePriority

from workers.errors import PermanentError
from workers.stores.azure_blob.multipart import AzureMultipart
from workers.stores.base import SHA256_METADATA, StoredFacts, check_key

REHYDRATE_TO = "Hot"


def _text(value: Any) -> str:
    """An SDK enum (StandardBlobTier) or a plain string, as the service spells it."""
    return str(getattr(value, "value", value) or "")


class AzureTiers(AzureMultipart):
    """Access tiers and rehydration (store.py declares the tiers)."""

    default_storage_class: ClassVar[str]
    storage_classes: ClassVar[tuple[str, ...]]
    archive_classes: ClassVar[frozenset[str]]

    def _properties(self, key: str) -> BlobProperties:
        blob = self._blob(check_key(key))
        properties: BlobProperties = self._call(
            f"check of {self._where(key)}", blob.get_blob_properties
        )
        return properties

    def _tier_of(self, properties: BlobProperties) -> str:
        # No tier on the blob: it takes the account's default (inferred), Hot unless set.
        return _text(properties.blob_tier) or self.default_storage_class

    def storage_class_of(self, key: str) -> str:
        return self._tier_of(self._properties(key))

    def set_storage_class(self, key: str, storage_class: str) -> None:
        if storage_class not in self.storage_classes:
            raise PermanentError(
                f"{storage_class} is not an Azure access tier ({', '.join(self.storage_classes)})"
            )
        current = self._tier_of(self._properties(key))
        if current == storage_class:
            return
        if current in self.archive_classes:
            raise PermanentError(
                f"{self._where(key)} is in {current}: it leaves it only by a rehydration"
            )
        blob = self._blob(key)
        self._call(
            f"move of {self._where(key)} to {storage_class}",
            lambda: blob.set_standard_blob_tier(storage_class),
        )

    def rehydrate(self, key: str) -> bool:
        properties = self._properties(key)
        if self._tier_of(properties) not in self.archive_classes:
            return True
        if _text(properties.archive_status).startswith("rehydrate-pending"):
            return False  # asked already; Azure takes up to 15 hours (1 at High priority)
        blob = self._blob(key)
        priority = RehydratePriority(self.config.rehydrate_priority)
        self._call(
            f"rehydration of {self._where(key)} to {REHYDRATE_TO} ({priority.value} priority)",
            lambda: blob.set_standard_blob_tier(REHYDRATE_TO, rehydrate_priority=priority),
        )
        return self._tier_of(self._properties(key)) not in self.archive_classes

    def stored_facts(self, key: str) -> StoredFacts:
        properties = self._properties(key)
        # Metadata names are case-insensitive (HTTP headers): any case is the same name.
        metadata = {name.lower(): value for name, value in (properties.metadata or {}).items()}
        md5 = properties.content_settings.content_md5 if properties.content_settings else None
        return StoredFacts(
            size=int(properties.size),
            storage_class=self._tier_of(properties),
            sha256=metadata.get(SHA256_METADATA),
            checksums={"MD5": bytes(md5).hex()} if md5 else {},
        )

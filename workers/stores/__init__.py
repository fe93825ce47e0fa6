"""Object stores behind one protocol; `make_store` picks one from the settings."""

from workers.settings import Settings
from workers.stores.base import ObjectInfo, ObjectStore, UploadedPart
from workers.stores.local import LocalStore

__all__ = ["LocalStore", "ObjectInfo", "ObjectStore", "UploadedPart", "make_store"]


def make_store(settings: Settings) -> ObjectStore:
    """The store OBJECT_STORE_LOCATION_TYPE names. Call it after fork, never at import.

    The SDKs are imported here, only when chosen (start-up cost and memory; the adapters
    import nothing above them, so no cycle closes); their clients are made on first use.
    """
    kind = settings.object_store_location_type
    if kind == "s3":
        from workers.stores.s3 import S3Store

        return S3Store.from_settings(settings)
    if kind == "azure-blob-storage":
        from workers.stores.azure_blob import AzureBlobStore

        return AzureBlobStore.from_settings(settings)
    return LocalStore(settings.object_store_location_local, file_mode=settings.local_file_mode)

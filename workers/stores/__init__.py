"""Object stores behind one protocol, and the registry that names them.

A new store is a module (or a subpackage, like s3/ and azure_blob/, whose `__init__`
exports the class) in this package whose class implements `RegisteredStore`
(stores/base.py: its settings, secrets and capabilities as class data) plus one line
in `STORES` (and its name in settings.StoreType, which tests/unit/test_registries.py
holds equal to it). Redaction, retention and the tests read the registry.
"""

from functools import cache
from importlib import import_module

from workers.settings import Settings, StoreType
from workers.stores.base import ObjectInfo, ObjectStore, RegisteredStore, UploadedPart
from workers.stores.local import LocalStore

# name (OBJECT_STORE_LOCATION_TYPE) → "module:Class". The module is imported only when
# its store is chosen, so a worker writing to S3 never loads the Azure SDK.
STORES: dict[StoreType, str] = {
    "local": "workers.stores.local:LocalStore",
    "s3": "workers.stores.s3:S3Store",
    "azure-blob-storage": "workers.stores.azure_blob:AzureBlobStore",
}

__all__ = [
    "STORES",
    "LocalStore",
    "ObjectInfo",
    "ObjectStore",
    "RegisteredStore",
    "UploadedPart",
    "make_store",
    "store_class",
]


@cache
def store_class(name: str) -> type[RegisteredStore]:
    """The class registered as `name`, its module (and SDK) imported now."""
    module, _, attribute = STORES[name].partition(":")  # type: ignore[index]
    cls: type[RegisteredStore] = getattr(import_module(module), attribute)
    return cls


def make_store(settings: Settings) -> ObjectStore:
    """The store OBJECT_STORE_LOCATION_TYPE names. Call it after fork, never at import.

    Its client is made on first use.
    """
    return store_class(settings.object_store_location_type).from_settings(settings)

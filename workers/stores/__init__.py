"""Object stores behind one protocol; `make_store` picks one from the settings."""

from workers.errors import ConfigError
from workers.settings import Settings
from workers.stores.base import ObjectInfo, ObjectStore, UploadedPart
from workers.stores.local import LocalStore

__all__ = ["LocalStore", "ObjectInfo", "ObjectStore", "UploadedPart", "make_store"]


def make_store(settings: Settings) -> ObjectStore:
    """The store OBJECT_STORE_LOCATION_TYPE names. Call it after fork, never at import."""
    kind = settings.object_store_location_type
    if kind == "local":
        return LocalStore(settings.object_store_location_local)
    raise ConfigError(
        f"OBJECT_STORE_LOCATION_TYPE={kind} is not available in this version yet; use `local`"
    )

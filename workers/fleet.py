"""The per-process runtime: settings, the services file and the object store.

Made on first use in each process (so after a worker forks), never at import.
"""

import logging
import os
from dataclasses import dataclass

from pydantic import SecretStr

from workers.errors import ConfigError
from workers.redact import url_password_forms
from workers.services_config import FleetConfig, load_fleet_config
from workers.settings import Settings, check_classes, get_settings, secondary_settings
from workers.sources import class_of, source_class
from workers.stores import ObjectStore, make_store, store_class

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fleet:
    settings: Settings
    config: FleetConfig
    store: ObjectStore
    secondary: ObjectStore | None = None  # SECONDARY_OBJECT_STORE_*: a second copy
    secondary_settings: Settings | None = None

    def secrets(self) -> list[str]:
        """Every secret value this process knows, for redaction."""
        values = settings_secrets(self.settings)
        if self.secondary_settings is not None:
            values.extend(settings_secrets(self.secondary_settings))
        for services in self.config.namespaces.values():
            for spec in services.values():
                if spec.password_env and os.environ.get(spec.password_env):
                    values.append(os.environ[spec.password_env])
                values.extend(url_password_forms(spec.url))
        return values


def settings_secrets(settings: Settings) -> list[str]:
    """The secret values the settings themselves hold (not the services' passwords)."""
    values = [key.key for key in settings.api_keys] + _store_secrets(settings)
    # Every secret-typed field and every URL (its password), whichever store or service
    # reads it: a field added later cannot be left out of redaction.
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            values.append(value.get_secret_value())
        elif isinstance(value, str) and name.endswith("_url"):
            values.extend(url_password_forms(value))
    for listed in (settings.backup_encryption_old_keys, settings.backup_signing_key):
        if listed is not None:  # comma-separated keys: each one alone is a secret too
            keys = listed.get_secret_value().split(",")
            values.extend(key.strip() for key in keys if key.strip())
    return values


def _store_secrets(settings: Settings) -> list[str]:
    """What the chosen store declares secret (`secret_fields`), plain strings included."""
    store = store_class(settings.object_store_location_type)
    values: list[str] = []
    for name in store.secret_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            values.append(value.get_secret_value())
        elif isinstance(value, str) and value:
            values.extend(url_password_forms(value) if "://" in value else [value])
    return values


_current: tuple[int, Fleet] | None = None


def check_storage_classes(settings: Settings, store: ObjectStore) -> None:
    """STORAGE_CLASSES names only classes of the configured store, in order (ConfigError)."""
    try:
        check_classes(
            settings.storage_class_map,
            store.storage_classes,
            store.kind,
            store.archive_classes,
        )
    except ValueError as exc:
        raise ConfigError(f"invalid setting STORAGE_CLASSES: {exc}") from None


def build_fleet(settings: Settings) -> Fleet:
    config = load_fleet_config(
        settings.backfleet_config, namespace_override=settings.backfleet_namespace
    )
    config.check_hook_timeouts(settings)
    store = make_store(settings)
    check_storage_classes(settings, store)
    second = secondary_settings(settings)
    return Fleet(
        settings=settings,
        config=config,
        store=store,
        secondary=None if second is None else make_store(second),
        secondary_settings=second,
    )


def current_fleet() -> Fleet:
    global _current
    if _current is None or _current[0] != os.getpid():
        _current = (os.getpid(), build_fleet(get_settings()))
    return _current[1]


def warm_up() -> None:
    """Load, in a new worker process, what its first task would: the fleet (settings,
    services file, the store adapters with their SDKs and clients) and the source kinds the services
    file names, so the first backup after a pod starts does not pay for them (~0.5 s of
    imports). A fleet that cannot be built is left for that task to report in full.
    """
    try:
        fleet = current_fleet()
        for store in (fleet.store, fleet.secondary):
            if store is not None:
                store.warm_up()
        specs = [
            spec for services in fleet.config.namespaces.values() for spec in services.values()
        ]
        for kind in sorted({spec.kind for spec in specs}):
            source_class(kind)
        for spec in specs:  # a kind's mode (pgbase) is a module of its own
            class_of(spec)
    except Exception as exc:  # the first task says what is wrong, its secrets masked
        log.warning(
            "could not prepare this worker process ahead of its first task (%s); "
            "that task will report why",
            type(exc).__name__,
        )


def reset_fleet() -> None:
    """Forget the cached fleet (tests that change the environment)."""
    global _current
    _current = None
    get_settings.cache_clear()

"""The per-process runtime: settings, the services file and the object store.

Made on first use in each process (so after a worker forks), never at import.
"""

import os
from dataclasses import dataclass

from workers.services_config import FleetConfig, load_fleet_config
from workers.settings import Settings, get_settings
from workers.stores import ObjectStore, make_store


@dataclass(frozen=True)
class Fleet:
    settings: Settings
    config: FleetConfig
    store: ObjectStore

    def secrets(self) -> list[str]:
        """Every secret value this process knows, for redaction."""
        values = [key.key for key in self.settings.api_keys]
        for secret in (
            self.settings.aws_secret_key,
            self.settings.aws_access_key,
            self.settings.azure_storage_access_key,
            self.settings.azure_storage_sas_token,
            self.settings.azure_storage_connection_string,
            self.settings.backup_encryption_key,
            self.settings.backup_encryption_old_keys,
            self.settings.alert_webhook_url,  # Slack's webhook URLs carry a token
        ):
            if secret is not None:
                values.append(secret.get_secret_value())
        for services in self.config.namespaces.values():
            for spec in services.values():
                if spec.password_env and os.environ.get(spec.password_env):
                    values.append(os.environ[spec.password_env])
        return values


_current: tuple[int, Fleet] | None = None


def build_fleet(settings: Settings) -> Fleet:
    config = load_fleet_config(
        settings.backfleet_config, namespace_override=settings.backfleet_namespace
    )
    return Fleet(settings=settings, config=config, store=make_store(settings))


def current_fleet() -> Fleet:
    global _current
    if _current is None or _current[0] != os.getpid():
        _current = (os.getpid(), build_fleet(get_settings()))
    return _current[1]


def reset_fleet() -> None:
    """Forget the cached fleet (tests that change the environment)."""
    global _current
    _current = None
    get_settings.cache_clear()

"""What the Azure Blob store is told: the settings it reads, as one frozen value."""

from dataclasses import dataclass, field

from workers.settings import Settings
from workers.stores.sdk import secret_value


@dataclass(frozen=True)
class AzureConfig:
    container: str
    service_url: str = "https://prophecyathenabackup.blob.core.windows.net/"
    account_name: str = "prophecyathenabackup"
    access_key: str | None = field(default=None, repr=False)
    sas_token: str | None = field(default=None, repr=False)
    connection_string: str | None = field(default=None, repr=False)
    service_url_set: bool = True  # False: take the URL from the connection string
    # Reading an Archive blob: the rehydration's priority (REHYDRATION_TIER: Expedited is
    # High, the others Standard).
    rehydrate_priority: str = "Standard"
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "AzureConfig":
        return cls(
            container=settings.azure_storage_container_name,
            service_url=settings.azure_storage_account_service_url,
            account_name=settings.azure_storage_account_name,
            access_key=secret_value(settings.azure_storage_access_key),
            sas_token=secret_value(settings.azure_storage_sas_token),
            connection_string=secret_value(settings.azure_storage_connection_string),
            service_url_set="azure_storage_account_service_url" in settings.model_fields_set,
            rehydrate_priority="High" if settings.rehydration_tier == "Expedited" else "Standard",
        )

    @property
    def secrets(self) -> list[str]:
        found = [s for s in (self.access_key, self.sas_token, self.connection_string) if s]
        for part in (self.connection_string or "").split(";"):
            name, _, value = part.partition("=")
            if name.strip().lower() in ("accountkey", "sharedaccesssignature"):
                found.append(value)
        return found

    @property
    def credentials_hint(self) -> str:
        if self.connection_string:
            return "AZURE_STORAGE_CONNECTION_STRING"
        if self.access_key:
            return "AZURE_STORAGE_ACCOUNT_NAME / AZURE_STORAGE_ACCESS_KEY"
        return "AZURE_STORAGE_SAS_TOKEN (its permissions and expiry)"

    @property
    def missing_container(self) -> str:
        return (
            f"container {self.container} does not exist (AZURE_STORAGE_CONTAINER_NAME): "
            "run `backfleet store init` to create it"
        )

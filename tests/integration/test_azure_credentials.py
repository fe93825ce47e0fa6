"""Azure SAS tokens and connection strings against Azurite: a real backup and restore each.

Azurite checks a SAS's signature (made here with the well-known development key by
azure-storage-blob's generate_container_sas / generate_account_sas), its permissions
and its expiry, so a SAS signed with another key, or one without write permission,
is refused; a connection string names the endpoint and the account, with its key or a
SAS. What stays unproven here: Azure AD (token) credentials, which Backfleet does not
offer, and stored access policies on the container (Azurite does not enforce them).
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import (
    AccountSasPermissions,
    ContainerSasPermissions,
    ResourceTypes,
    generate_account_sas,
    generate_container_sas,
)
from pydantic import SecretStr

from tests.health_fleet import make_fleet, take_backup
from tests.plugins.object_stores import FAST_RETRIES, AzuriteServer
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.errors import ConfigError
from workers.operations.restore import run_restore
from workers.repository.manifest import manifest_key
from workers.settings import Settings
from workers.stores.azure_blob import AzureBlobStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
ALL = {"read": True, "add": True, "create": True, "write": True, "delete": True, "list": True}


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


def _expiry() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


def container_sas(
    azurite: AzuriteServer, container: str, *, key: str | None = None, **allowed: bool
) -> str:
    return generate_container_sas(
        azurite.account,
        container,
        account_key=key or azurite.key,
        permission=ContainerSasPermissions(**(allowed or ALL)),
        expiry=_expiry(),
    )


def account_sas(azurite: AzuriteServer) -> str:
    return generate_account_sas(
        azurite.account,
        account_key=azurite.key,
        resource_types=ResourceTypes(service=True, container=True, object=True),
        permission=AccountSasPermissions(**ALL),
        expiry=_expiry(),
    )


def endpoint(azurite: AzuriteServer) -> str:
    return azurite.service_url.rstrip("/")


def settings_for(azurite: AzuriteServer, container: str, how: str) -> tuple[Settings, str]:
    """Settings that reach Azurite by `how`, and the secret they carry."""
    base: dict[str, Any] = {
        "object_store_location_type": "azure-blob-storage",
        "azure_storage_container_name": container,
        **FAST_RETRIES,
    }
    if how in ("container-sas", "account-sas"):
        sas = container_sas(azurite, container) if how == "container-sas" else account_sas(azurite)
        values = {
            **base,
            "azure_storage_account_name": azurite.account,
            "azure_storage_account_service_url": azurite.service_url,
            "azure_storage_sas_token": f"?{sas}",  # as the portal copies it: a leading "?"
        }
        return Settings(**values), sas
    if how == "connection-string":
        secret = azurite.key
        string = (
            f"DefaultEndpointsProtocol=http;AccountName={azurite.account};"
            f"AccountKey={secret};BlobEndpoint={endpoint(azurite)};"
        )
    else:  # a connection string that carries a SAS
        secret = account_sas(azurite)
        string = f"BlobEndpoint={endpoint(azurite)};SharedAccessSignature={secret}"
    # No service URL: the store takes it from the connection string.
    return Settings(**base, azure_storage_connection_string=string), secret


@pytest.mark.parametrize(
    "how", ["container-sas", "account-sas", "connection-string", "connection-string-sas"]
)
def test_backup_and_restore_with_each_credential(
    how: str, azurite_server: AzuriteServer, azure_container: str, tmp_path: Path
) -> None:
    settings, secret = settings_for(azurite_server, azure_container, how)
    assert settings.azure_storage_access_key is None
    store = AzureBlobStore.from_settings(settings)
    store.check()  # readiness works with this credential too
    fleet = make_fleet(tmp_path, store=store, settings=settings)
    stamp = take_backup(fleet)
    assert store.exists(manifest_key("app", stamp))
    url = store.url_for("app", stamp)
    assert url == f"{azurite_server.service_url}{azure_container}/app/{stamp}/"
    assert secret not in url

    changed = tmp_path / "data" / "files" / "a.txt"
    changed.write_text("changed after the backup\n")
    with session_scope(fleet.settings.database_url) as session:
        restore_id = queries.create_restore(
            session,
            namespace="app",
            source_namespace="app",
            timestamp=stamp,
            services=["db", "files"],
            skipped=[],
            backup_url=url,
        ).id
    assert run_restore(fleet, restore_id=restore_id) == "Success"
    assert changed.read_text() == "alpha\n"


def test_azurite_refuses_a_sas_signed_with_another_key(
    azurite_server: AzuriteServer, azure_container: str
) -> None:
    other_key = "b3RoZXIta2V5LW5vdC10aGUtYWNjb3VudHMtb3duLWtleS0wMTIzNDU2Nzg5MA=="
    sas = container_sas(azurite_server, azure_container, key=other_key)
    settings = settings_for(azurite_server, azure_container, "container-sas")[0]
    store = AzureBlobStore.from_settings(
        settings.model_copy(update={"azure_storage_sas_token": SecretStr(sas)})
    )
    with pytest.raises(ConfigError) as refused:
        store.put_object("app/x/manifest.json", b"{}")
    assert "AZURE_STORAGE_SAS_TOKEN" in str(refused.value)
    assert sas.split("sig=")[1] not in str(refused.value)


def test_azurite_refuses_a_write_with_a_read_only_sas(
    azurite_server: AzuriteServer, azure_container: str
) -> None:
    sas = container_sas(azurite_server, azure_container, read=True, list=True)
    settings = settings_for(azurite_server, azure_container, "container-sas")[0]
    store = AzureBlobStore.from_settings(
        settings.model_copy(update={"azure_storage_sas_token": SecretStr(sas)})
    )
    assert list(store.list("app/")) == []  # reading is allowed
    with pytest.raises(ConfigError, match="AZURE_STORAGE_SAS_TOKEN"):
        store.put_object("app/x/manifest.json", b"{}")

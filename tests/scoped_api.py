"""Two tenants of one fleet, their scoped keys, and a request for every /athena route.

Shared by tests/unit/test_api_scopes.py (SQLite catalog) and
tests/integration/test_api_scopes_servers.py (PostgreSQL catalog, Redis broker).
Requests are built from the app's OpenAPI document, so a new route is covered
without being listed here.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import SecretStr

from api.scopes import ROLE_OF
from workers.api_keys import ROLES, Role
from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import SUCCESS
from workers.fleet import Fleet
from workers.repository.manifest import ArtifactEntry, Manifest, manifest_key
from workers.repository.manifest_mac import MacKey
from workers.services_config import parse_fleet_config
from workers.settings import Settings
from workers.stores.local import LocalStore

BASE = "/athena/api/v1"
TS = "2023-02-02t17-03-15"
TENANTS = ("app", "team-b")  # both configured; `app` is the default
UNCONFIGURED = "old-cluster"  # a namespace with a backup in the store, not in this fleet
KEY_OF = {"app": "key-of-app-5e1f", "team-b": "key-of-team-b-7a2c"}
ALL_ROLES = "+".join(ROLES)
# Keys of every namespace, each lacking one role.
WITHOUT_ROLE: dict[Role, str] = {role: f"key-without-{role}-91d0" for role in ROLES}

CONFIG = """
namespace = "app"
[namespaces.app.services.files]
kind = "directory"
path = "/data/app-files"
[namespaces.team-b.services.files]
kind = "directory"
path = "/data/team-b-files"
"""


def api_keys_setting() -> str:
    entries = [f"{KEY_OF[ns]}:{ns}@example.com:{ns}-corp:{ns}:{ALL_ROLES}" for ns in TENANTS]
    for role, key in WITHOUT_ROLE.items():
        others = "+".join(r for r in ROLES if r != role)
        entries.append(f"{key}:ops@example.com:ops:*:{others}")
    return ",".join(entries)


SIGNING_KEY = "a-signing-key-of-at-least-32-characters"


def make_fleet(database_url: str, store_root: Path, **settings: Any) -> Fleet:
    upgrade_catalog(database_url)
    store = LocalStore(store_root)
    store.init()
    values: dict[str, Any] = {
        "database_url": database_url,
        "backfleet_api_keys": SecretStr(api_keys_setting()),
        "object_store_location_local": store_root,
        "enable_user_events": True,
        "backup_signing_key": SecretStr(SIGNING_KEY),
        **settings,
    }
    return Fleet(settings=Settings(**values), config=parse_fleet_config(CONFIG), store=store)


def write_manifest(store: LocalStore, namespace: str) -> None:
    artifact = ArtifactEntry(
        service="files",
        key=f"{namespace}/{TS}/files.tar",
        format="tar",
        compression="none",
        size=3,
        sha256="0" * 64,
        source_size=3,
        source={"kind": "directory"},
    )
    manifest = Manifest(
        namespace=namespace,
        timestamp=TS,
        started_at="2023-02-02T17:03:15Z",
        finished_at="2023-02-02T17:04:15Z",
        artifacts=[artifact],
    )
    # Signed: a backup found only in the store needs a valid MAC
    # (workers/repository/authenticity.py).
    store.put_object(manifest_key(namespace, TS), manifest.to_bytes(MacKey.derive(SIGNING_KEY)))


def seed(fleet: Fleet) -> None:
    """A successful backup TS of each tenant (catalog and store), and one of UNCONFIGURED."""
    assert isinstance(fleet.store, LocalStore)
    moment = datetime(2023, 2, 2, 17, 3, 15, tzinfo=UTC)
    with session_scope(fleet.settings.database_url) as session:
        for namespace in TENANTS:
            backup = queries.create_backup(
                session,
                namespace=namespace,
                services=["files"],
                only_config=False,
                trigger="api",
                moment=moment,
            )
            assert backup.timestamp == TS
            backup.status = SUCCESS
    for namespace in (*TENANTS, UNCONFIGURED):
        write_manifest(fleet.store, namespace)


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # the OpenAPI template, e.g. /athena/api/v1/backup/{timestamp}
    operation: dict[str, Any]

    @property
    def role(self) -> Role | None:
        return ROLE_OF.get((self.method, self.path))

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    def request(self, namespace: str, *, key: str) -> dict[str, Any]:
        """`TestClient.request` arguments acting on `namespace`; every required field filled."""
        params: dict[str, str] = {}
        names_namespace = False
        for parameter in self.operation.get("parameters", []):
            name = parameter["name"]
            if parameter["in"] == "query" and name == "namespace":
                params[name], names_namespace = namespace, True
            elif parameter["in"] in ("query", "path") and name == "timestamp":
                params.setdefault(name, TS)
            elif parameter.get("required"):
                raise AssertionError(f"{self}: fill its required parameter {name} in this helper")
        url = self.path.replace("{timestamp}", TS)
        params = {k: v for k, v in params.items() if f"{{{k}}}" not in self.path}
        body: Any = None
        request_body = self.operation.get("requestBody")
        if request_body and (request_body.get("required") or not names_namespace):
            schema = request_body["content"]["application/json"]["schema"]
            if schema.get("type") == "array":
                body = []
            else:
                properties = schema.get("properties", {})
                body = {}
                if "namespace" in properties:
                    body["namespace"], names_namespace = namespace, True
                if "timestamp" in properties:  # optional in a restore to a moment: filled
                    body["timestamp"] = TS
                for name in schema.get("required", []):
                    if name != "timestamp":
                        raise AssertionError(f"{self}: fill its required field {name} here")
                    body[name] = TS
        if not names_namespace:
            raise AssertionError(
                f"{self} takes no namespace: decide how a key scoped to namespaces may use it"
            )
        return {
            "method": self.method,
            "url": url,
            "params": params,
            "json": body,
            "headers": {"Authorization": f"Bearer {key}"},
        }


def athena_calls(app: FastAPI) -> list[Call]:
    """Every /athena operation of the app's OpenAPI document."""
    paths: dict[str, dict[str, Any]] = app.openapi()["paths"]
    return [
        Call(method.upper(), path, operation)
        for path, operations in sorted(paths.items())
        if path.startswith("/athena/")
        for method, operation in sorted(operations.items())
    ]

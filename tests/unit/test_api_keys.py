"""API key entries and the hashed keys file: parsed, validated at start, secrets never echoed."""

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.main import create_app
from workers.api_keys import ROLES, ApiKey, configured_keys, match_api_key, parse_api_keys
from workers.catalog.db import dispose_engines
from workers.errors import ConfigError
from workers.fleet import Fleet
from workers.services_config import parse_fleet_config
from workers.settings import Settings, load_settings

SECRET = "tenant-key-3b9f0c"
DIGEST = hashlib.sha256(SECRET.encode()).hexdigest()


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("BACKFLEET_API_KEYS", "BACKFLEET_API_KEYS_FILE"):
        monkeypatch.delenv(name, raising=False)
    configured_keys.cache_clear()
    yield
    configured_keys.cache_clear()
    dispose_engines()


def test_the_three_entry_forms() -> None:
    plain, owned, scoped = parse_api_keys(
        "k1, k2:ops@example.com:acme, k3:b@example.com:globex:team-b+app:read+restore"
    )
    for key in (plain, owned):
        assert key.namespaces is None and key.roles == frozenset(ROLES)
    assert (owned.owner_email, owned.customer) == ("ops@example.com", "acme")
    assert scoped.namespaces == frozenset({"team-b", "app"})
    assert scoped.roles == {"read", "restore"}
    assert scoped.may_act_on("app") and not scoped.may_act_on("other")
    assert scoped.holds("read") and not scoped.holds("backup")
    (every,) = parse_api_keys("k4:o@x.io:c:*:ingest")
    assert every.namespaces is None and every.may_act_on("anything")


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("s3cr3t-value:o:c:app", "entry 1 must be"),
        ("s3cr3t-value:o:c::read", "namespaces is empty"),
        ("s3cr3t-value:o:c:app:", "roles is empty"),
        ("s3cr3t-value:o:c:App_1:read", "'App_1' is not a DNS label"),
        ("s3cr3t-value:o:c:app:read+admin", "unknown role 'admin'"),
        ("s3cr3t-value:o:c:app+*:read", "'*' is not a DNS label"),
    ],
)
def test_a_bad_entry_names_what_to_fix_and_never_the_key(
    monkeypatch: pytest.MonkeyPatch, entry: str, says: str
) -> None:
    monkeypatch.setenv("BACKFLEET_API_KEYS", entry)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "BACKFLEET_API_KEYS" in str(caught.value)
    assert says in str(caught.value)
    assert "s3cr3t-value" not in str(caught.value)


def keys_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "api-keys.toml"
    path.write_text(text)
    return path


GOOD_FILE = f"""
[[keys]]
sha256 = "{DIGEST}"
owner = "b@example.com"
customer = "globex"
namespaces = ["team-b"]
roles = ["read", "ingest"]

[[keys]]
sha256 = "{hashlib.sha256(b"operator-key").hexdigest().upper()}"
namespaces = "*"
roles = ["read", "backup", "restore", "ingest"]
"""


def test_the_keys_file_holds_hashes_and_scopes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BACKFLEET_API_KEYS", "env-key")
    monkeypatch.setenv("BACKFLEET_API_KEYS_FILE", str(keys_file(tmp_path, GOOD_FILE)))
    env_key, tenant, operator = load_settings().api_keys
    assert env_key.namespaces is None
    assert tenant.key == "" and tenant.digest == bytes.fromhex(DIGEST)
    assert (tenant.owner_email, tenant.customer) == ("b@example.com", "globex")
    assert tenant.namespaces == frozenset({"team-b"}) and tenant.roles == {"read", "ingest"}
    assert operator.namespaces is None and operator.roles == frozenset(ROLES)
    assert (operator.owner_email, operator.customer) == ("", "")


def test_a_key_from_the_file_is_accepted_by_the_api(tmp_path: Path) -> None:
    from workers.catalog.migrate import upgrade_catalog
    from workers.stores.local import LocalStore

    url = f"sqlite:///{tmp_path / 'c.db'}"
    upgrade_catalog(url)
    store = LocalStore(tmp_path / "store")
    store.init()
    settings = Settings(
        database_url=url,
        backfleet_api_keys=SecretStr(""),
        backfleet_api_keys_file=keys_file(tmp_path, GOOD_FILE),
        object_store_location_local=tmp_path / "store",
    )
    config = parse_fleet_config('[namespaces.team-b.services.f]\nkind = "directory"\npath = "/x"\n')
    fleet = Fleet(settings=settings, config=config, store=store)
    client = TestClient(create_app(lambda: fleet, lambda *_: "task"))
    latest = "/athena/api/v1/backup/latest"
    assert client.get(latest, headers={"Authorization": f"Bearer {SECRET}"}).status_code == 404
    assert client.get(latest, headers={"Authorization": DIGEST}).status_code == 401  # not the hash
    refused = client.post(
        "/athena/api/v1/ondemandbackup", json={}, headers={"Authorization": SECRET}
    )
    assert refused.status_code == 403  # the file's key has no `backup` role


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[[keys]]\nsha256 = 'SECRET'\nnamespaces = ['app']\nroles = ['read']\n", "64 hex digits"),
        (f"[[keys]]\nsha256 = '{DIGEST}'\nroles = ['read']\n", "entry 1: namespaces is required"),
        (f"[[keys]]\nsha256 = '{DIGEST}'\nnamespaces = ['app']\n", "roles is required"),
        (
            f"[[keys]]\nsha256 = '{DIGEST}'\nnamespaces = ['app']\nroles = ['read']\nrole = 'x'\n",
            "unknown field(s) role",
        ),
        (
            f"[[keys]]\nsha256 = '{DIGEST}'\nnamespaces = ['app']\nroles = ['write']\n",
            "unknown role 'write'",
        ),
        (f"[[keys]]\nsha256 = '{DIGEST}'\nnamespaces = []\nroles = ['read']\n", "namespaces is"),
        (f"[[keys]]\nsha256 = '{DIGEST}'\nnamespaces = [1]\nroles = ['read']\n", "list of str"),
        (f"[[keys]]\nsha256 = '{DIGEST}'\nnamespaces = ['*']\nroles = ['read']\n" * 2, "same key"),
        (f"[key]\nsha256 = '{DIGEST}'\n", "unknown top-level key(s) key"),
        ("keys = 'no'\n", "array of tables"),
        ("[[keys]\n", "not valid TOML"),
    ],
)
def test_a_bad_keys_file_stops_the_start_naming_what_to_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, says: str
) -> None:
    text = text.replace("SECRET", SECRET)
    monkeypatch.setenv("BACKFLEET_API_KEYS_FILE", str(keys_file(tmp_path, text)))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "BACKFLEET_API_KEYS_FILE" in message
    assert says in message
    assert SECRET not in message and DIGEST not in message


def test_a_missing_keys_file_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BACKFLEET_API_KEYS_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match=r"BACKFLEET_API_KEYS_FILE: .*cannot read .*nope.toml"):
        load_settings()


def test_the_same_key_in_the_variable_and_the_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BACKFLEET_API_KEYS", f"{SECRET}:o@x.io:c")
    monkeypatch.setenv("BACKFLEET_API_KEYS_FILE", str(keys_file(tmp_path, GOOD_FILE)))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "same key as an earlier one" in str(caught.value)
    assert SECRET not in str(caught.value)


EMPTY_DIGEST = hashlib.sha256(b"").hexdigest()  # `printf %s "$KEY" | sha256sum` with KEY unset


def test_the_hash_of_an_empty_key_is_refused_in_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A misspelt variable hashes to this digest; accepted, `Authorization: Bearer` would match it.
    text = f"[[keys]]\nsha256 = '{EMPTY_DIGEST}'\nnamespaces = ['*']\nroles = ['read']\n"
    monkeypatch.setenv("BACKFLEET_API_KEYS_FILE", str(keys_file(tmp_path, text)))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "entry 1: sha256 is the SHA-256 of an empty key" in str(caught.value)


def test_an_empty_presented_key_matches_nothing() -> None:
    empty = ApiKey("", digest=bytes.fromhex(EMPTY_DIGEST))  # as if the file had let it in
    for presented in ("", " ", "Bearer", "Bearer  ", "bearer "):
        assert match_api_key(presented, [empty]) is None

"""Every registered store and source kind declares what the rest of the fleet reads.

A store or kind is one module plus one line in `stores.STORES` / `sources.SOURCES`:
these tests fail when a registered one lacks what the registry requires, so nothing is
silently left out (of redaction, of test restores, of `backfleet check`).
"""

import inspect
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import SecretStr

from workers.fleet import settings_secrets
from workers.services_config import ServiceKind, ServiceSpec
from workers.settings import Settings, StoreType
from workers.sources import SOURCES, ScratchRestore, source_class
from workers.stores import STORES, ObjectStore, store_class
from workers.stores.memory import MemoryStore
from workers.stores.null import NullStore

SETTINGS_FIELDS = Settings.model_fields


def test_the_store_registry_names_every_store_type_and_only_those() -> None:
    assert set(STORES) == set(get_args(StoreType))
    # The secondary store takes the same types (or none).
    secondary = Settings.model_fields["secondary_object_store_location_type"].annotation
    assert set(get_args(secondary)) == {"", *STORES}
    assert Settings(secondary_object_store_location_type="s3").secondary_object_store_location_type


@pytest.mark.parametrize("name", sorted(STORES))
def test_a_store_declares_its_settings_secrets_and_capabilities(name: str) -> None:
    cls = store_class(name)
    assert cls.kind == name
    for flag in ("parallel_parts", "object_lock"):
        assert isinstance(getattr(cls, flag), bool), f"{name} does not declare {flag}"
    assert isinstance(cls.default_storage_class, str) and cls.default_storage_class
    assert callable(cls.stored_sha256)
    for limit in ("max_parts", "min_part_size", "max_part_size"):
        assert getattr(cls, limit) > 0
    assert set(cls.settings_fields) <= set(SETTINGS_FIELDS), "unknown settings"
    assert set(cls.secret_fields) <= set(cls.settings_fields)
    # A secret-typed field or a URL (it may carry a password) is declared secret.
    for field in cls.settings_fields:
        annotation = str(SETTINGS_FIELDS[field].annotation)
        if "SecretStr" in annotation or field.endswith("_url"):
            assert field in cls.secret_fields, f"{name}: {field} is not declared secret"
    assert inspect.ismethod(cls.from_settings)
    assert callable(cls.locked_until)
    check_storage_class_declarations(cls)


def check_storage_class_declarations(cls: type[ObjectStore]) -> None:
    """Classes warm to cold, the default first (or none: one class); archive classes and
    billed minimums only of its own classes; the methods retention and restores call."""
    classes = cls.storage_classes
    assert isinstance(classes, tuple)
    assert not classes or classes[0] == cls.default_storage_class, cls.kind
    assert isinstance(cls.archive_classes, frozenset) and cls.archive_classes <= set(classes)
    assert set(cls.min_storage_days) <= set(classes) - {cls.default_storage_class}
    assert all(days > 0 for days in cls.min_storage_days.values())
    if classes:  # an archived object moves on only after a rehydration: the coldest ones
        assert all(
            classes.index(c) > classes.index(w)
            for c in cls.archive_classes
            for w in set(classes) - cls.archive_classes
        )
    for method in (
        "storage_class_of",
        "set_storage_class",
        "rehydrate",
        "extend_lock",
        "stored_facts",
    ):
        assert callable(getattr(cls, method)), (cls.kind, method)


@pytest.mark.parametrize("cls", [MemoryStore, NullStore])
def test_the_test_and_dry_run_stores_declare_one_class(cls: type[ObjectStore]) -> None:
    check_storage_class_declarations(cls)
    assert cls.storage_classes == () and not cls.archive_classes


@pytest.mark.parametrize("name", sorted(STORES))
def test_the_fleet_redacts_every_declared_secret_of_every_store(name: str) -> None:
    cls = store_class(name)
    values: dict[str, Any] = {}
    expected = []
    for number, field in enumerate(cls.secret_fields):
        secret = f"s3cr3t-{number}-value"
        if field.endswith("_url"):
            values[field] = f"https://user:{secret}@example.test/"
        elif "SecretStr" in str(SETTINGS_FIELDS[field].annotation):
            values[field] = SecretStr(secret)
        else:
            values[field] = secret
        expected.append(secret)
    # Whichever store is chosen: credentials left in the environment are redacted too.
    for chosen in STORES:
        found = settings_secrets(Settings(object_store_location_type=chosen, **values))
        for secret in expected:
            assert any(secret in value for value in found), (name, chosen, secret)


def test_the_source_registry_names_every_service_kind_and_only_those() -> None:
    assert set(SOURCES) == set(get_args(ServiceKind))


def spec_of(kind: str, tmp_path: Path) -> ServiceSpec:
    fields: dict[str, Any] = {
        "postgres": {"url": "postgresql://u@127.0.0.1:1/db"},
        "sqlite": {"path": tmp_path / "db.sqlite"},
        "directory": {"path": tmp_path / "tree"},
        "command": {
            "dump_command": ["true"],
            "restore_command": ["true"],
            "test_restore_command": ["true"],
        },
    }[kind]
    return ServiceSpec(kind=kind, **fields)


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_a_kind_declares_its_probe_volumes_and_restore_test(kind: str, tmp_path: Path) -> None:
    cls = source_class(kind)
    assert cls.kind == kind
    assert isinstance(cls.volumes, bool)
    for method in ("from_spec", "probe", "restore_test_target"):
        assert inspect.ismethod(getattr(cls, method)), f"{kind} lacks the class method {method}"
    for method in ("dump", "restore", "restore_volumes", "recover"):
        assert callable(getattr(cls, method, None)), f"{kind} lacks {method}"
    # A kind that says it backs up in volumes can plan and dump them (operations.backup
    # reads the flag, not the methods).
    for method in ("plan_volumes", "dump_volume"):
        assert callable(getattr(cls, method, None)) == cls.volumes, f"{kind}: volumes vs {method}"
    spec = spec_of(kind, tmp_path)
    source = cls.from_spec(spec, Settings(), ())
    assert source.kind == kind and source.format
    # A restore test (a drill), or an explicit reason why the service has none: never a
    # silent skip.
    target = cls.restore_test_target(spec, tmp_path)
    why_not = cls.restore_test_unavailable(spec)
    if why_not is None:
        assert target is not None, f"{kind} has no restore test and does not say why"
        if kind != "postgres":  # entering it creates a database: the contract suite does
            with target as scratch:
                assert isinstance(scratch, ScratchRestore) and callable(scratch.check)
    else:
        assert len(why_not) > 20, f"{kind}: say why it has no restore test"
        assert target is None
    if kind == "command":  # without its test_restore_command: not configured, and why
        bare = spec.model_copy(update={"test_restore_command": None})
        assert cls.restore_test_target(bare, tmp_path) is None
        assert "test_restore_command" in (cls.restore_test_unavailable(bare) or "")

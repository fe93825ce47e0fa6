"""Manifest MACs: what is signed, with which key, and what old readers make of it."""

import json

import pytest
from click.testing import CliRunner
from pydantic import SecretStr, ValidationError

from workers.cli import main
from workers.errors import IntegrityError
from workers.fleet import settings_secrets
from workers.repository.manifest import ArtifactEntry, Manifest, parse_manifest
from workers.repository.manifest_mac import MacKey, MacKeys, hkdf_sha256, verify
from workers.settings import Settings
from workers.transfer import crypto

SIGNING = "s" * 40
OLD_SIGNING = "o" * 40


def manifest() -> Manifest:
    entry = ArtifactEntry(
        service="files",
        key="app/2024-01-02t03-04-05/files.tar.zst",
        format="tar",
        compression="zstd",
        size=10,
        sha256="a" * 64,
        source_size=20,
        source={"kind": "directory", "files": 1, "ratio": 0.5},
    )
    return Manifest(
        namespace="app",
        timestamp="2024-01-02t03-04-05",
        started_at="s",
        finished_at="f",
        artifacts=[entry],
    )


def keys(**settings: str) -> MacKeys:
    return MacKeys.from_settings(Settings(**{k: SecretStr(v) for k, v in settings.items()}))


def test_a_signed_manifest_verifies_and_any_change_breaks_it() -> None:
    signing = keys(backup_signing_key=SIGNING)
    assert signing.current is not None
    data = manifest().to_bytes(signing.current)
    parsed, document = parse_manifest(data)
    assert parsed.artifacts == manifest().artifacts
    assert document["mac"]["alg"] == "hmac-sha256"
    assert document["mac"]["key_id"] == signing.current.key_id
    assert SIGNING not in data.decode()
    assert verify(document, signing)
    for change in ({"only_config": True}, {"artifacts": []}, {"extra": 1}):
        assert not verify({**document, **change}, signing)
    assert not verify(parse_manifest(manifest().to_bytes())[1], signing)  # unsigned
    assert not verify(document, keys(backup_signing_key="t" * 40))  # another key


def test_old_readers_ignore_the_mac_and_repeated_keys_are_refused() -> None:
    data = manifest().to_bytes(MacKey.derive(SIGNING))
    # What a reader before the MAC did: validate the JSON as a Manifest.
    assert Manifest.model_validate_json(data).artifacts == manifest().artifacts
    with pytest.raises(IntegrityError, match="appears twice"):
        parse_manifest(data.replace(b'"namespace": "app"', b'"namespace": "app", "namespace": "x"'))


def test_keys_come_from_the_signing_key_else_the_encryption_keys() -> None:
    encryption, old = crypto.generate_key(), crypto.generate_key()
    by_encryption = keys(backup_encryption_key=encryption, backup_encryption_old_keys=old)
    assert by_encryption.current == MacKey.derive(encryption)
    assert set(by_encryption.all_keys) == {MacKey.derive(k).key_id for k in (encryption, old)}
    rotated = keys(backup_signing_key=f"{SIGNING},{OLD_SIGNING}", backup_encryption_key=encryption)
    assert rotated.current == MacKey.derive(SIGNING)
    assert len(rotated.all_keys) == 3  # old signatures still verify after a rotation
    assert keys().current is None and keys().all_keys == {}
    signed_before = json.loads(manifest().to_bytes(MacKey.derive(OLD_SIGNING)))
    assert verify(signed_before, rotated)


def test_the_signing_key_is_a_long_secret() -> None:
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(backup_signing_key=SecretStr("short"))
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(backup_signing_key=SecretStr(f"{SIGNING},short"))
    settings = Settings(backup_signing_key=SecretStr(f"{SIGNING},{OLD_SIGNING}"))
    assert {SIGNING, OLD_SIGNING} <= set(settings_secrets(settings))
    assert SIGNING not in repr(settings)


def test_the_cli_passes_allow_unsigned_and_shows_the_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: dict[str, object] = {}

    class Row:
        id, source_namespace, services = 1, "app", ["files"]
        error = "allowUnsigned requested by cli: accepted the manifest of …"

    def request_restore(fleet: object, **kwargs: object) -> Row:
        asked.update(kwargs)
        return Row()

    class Config:
        default_namespace = "app"

    class FakeFleet:
        config = Config()

    monkeypatch.setattr("workers.fleet.current_fleet", lambda: FakeFleet())
    monkeypatch.setattr("workers.operations.jobs.request_restore", request_restore)
    result = CliRunner().invoke(main, ["restore", "2024-01-02t03-04-05", "--allow-unsigned"])
    assert result.exit_code == 0, result.output
    assert asked["allow_unsigned"] is True
    assert "warning: allowUnsigned requested by cli" in result.output
    CliRunner().invoke(main, ["restore", "2024-01-02t03-04-05"])
    assert asked["allow_unsigned"] is False


@pytest.mark.parametrize(
    "change",
    [
        lambda text: text.replace('"ratio": 0.5', '"ratio": NaN'),  # not JSON, Python reads it
        lambda text: text.replace('"ratio": 0.5', '"ratio": ' + "[" * 100_000 + "]" * 100_000),
    ],
)
def test_a_manifest_the_canonical_form_cannot_hold_is_refused_not_raised(change: object) -> None:
    """A forged manifest may only be refused (IntegrityError or an invalid MAC): any other
    error leaves the reconciler retrying its row forever, the namespace blocked."""
    signing = keys(backup_signing_key=SIGNING)
    assert signing.current is not None
    text = manifest().to_bytes(signing.current).decode()
    assert callable(change)
    data = change(text).encode()
    try:
        _, document = parse_manifest(data)
    except IntegrityError:
        return
    assert not verify(document, signing)


@pytest.mark.parametrize(
    ("salt", "info", "okm"),
    [
        (  # RFC 5869, test case 1
            bytes(range(13)),
            bytes(range(0xF0, 0xFA)),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        ),
        (  # RFC 5869, test case 3: no salt, no info
            b"",
            b"",
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        ),
    ],
)
def test_hkdf_gives_the_rfc_5869_vectors(salt: bytes, info: bytes, okm: str) -> None:
    assert hkdf_sha256(b"\x0b" * 22, salt=salt, info=info, length=42).hex() == okm


def test_keys_derive_as_before_the_standard_library_took_over_hkdf() -> None:
    """The values the `cryptography` package's HKDF gave: manifests signed then still verify."""
    key = MacKey.derive(SIGNING)
    assert key.key_id == "38a00246873f33f0"
    assert key.secret.hex() == "5f94495986511196b9b61275f648fc716027d58d6a8dae8c1185a0a0fbcc52f4"

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workers.errors import ConfigError
from workers.settings import Settings, load_settings, parse_api_keys
from workers.timestamps import parse_cron


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BROKER_URL", "REDIS_URL", "DATABASE_URL", "BACKFLEET_API_KEYS"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_follow_the_contract() -> None:
    settings = load_settings()
    assert settings.object_store_location_type == "local"
    assert str(settings.object_store_location_local) == "/backup"
    assert settings.aws_s3_bucket_name == "athena-ondemand-backup"
    assert settings.aws_s3_bucket_url_suffix == "&prefix=%v/%v/&showversions=false"
    assert settings.uevents_schedule == "0 0 * * *"
    assert settings.regular_backup_schedule == "0 * * * *"
    assert settings.enable_regular_backups is False
    assert settings.backfleet_api_port == 8080


def test_redis_url_is_an_alias_and_broker_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:7000/1")
    assert load_settings().broker_url == "redis://127.0.0.1:7000/1"
    monkeypatch.setenv("BROKER_URL", "redis://127.0.0.1:7001/0")
    assert load_settings().broker_url == "redis://127.0.0.1:7001/0"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REGULAR_BACKUP_SCHEDULE", "every hour"),
        ("UEVENTS_SCHEDULE", "61 * * * *"),
        ("OBJECT_STORE_LOCATION_TYPE", "ftp"),
        ("BACKFLEET_API_PORT", "99999"),
        ("BACKUP_PART_SIZE", "10"),
        ("BACKUP_PART_SIZE", "16 parsecs"),
        ("BACKUP_VOLUME_SIZE", "1KiB"),
        ("DATABASE_URL", "mysql://x"),
        ("ENABLE_REGULAR_BACKUPS", "perhaps"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()


def test_a_bad_secret_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKFLEET_API_KEYS", "s3cr3t-value:only-two-parts")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "BACKFLEET_API_KEYS" in str(caught.value)
    assert "s3cr3t-value" not in str(caught.value)


def test_api_keys_with_and_without_owner() -> None:
    keys = parse_api_keys("k1, k2:ops@example.com:acme ,")
    assert [(k.key, k.owner_email, k.customer) for k in keys] == [
        ("k1", "", ""),
        ("k2", "ops@example.com", "acme"),
    ]
    assert "k2" not in repr(keys[1])


def test_an_empty_variable_means_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # compose passes `${BACKUP_ENCRYPTION_KEY:-}` as an empty string when .env leaves it out
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", "")
    monkeypatch.setenv("BACKFLEET_API_PORT", "")
    settings = load_settings()
    assert settings.backup_encryption_key is None
    assert settings.backfleet_api_port == 8080


def test_sizes_take_a_unit_or_plain_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKUP_PART_SIZE", "16MiB")
    monkeypatch.setenv("BACKUP_VOLUME_SIZE", "2147483648")
    settings = load_settings()
    assert settings.backup_part_size == 16 << 20
    assert settings.backup_volume_size == 2 << 30


CRON_FIELDS = [name for name in Settings.model_fields if name.endswith("_schedule")]


@pytest.mark.parametrize("name", CRON_FIELDS)
def test_every_default_cron_parses(name: str) -> None:
    # Settings skip parsing a default (see _valid_cron): this is its check.
    parse_cron(Settings.model_fields[name].default)


def test_reading_default_settings_does_not_import_celery() -> None:
    code = "import sys; from workers.settings import load_settings; load_settings(); "
    code += "print(sorted(m for m in sys.modules if m.split('.')[0] == 'celery'))"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_SCHEDULE")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_a_cron_setting_that_differs_from_its_default_is_still_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VERIFY_SCHEDULE", "0 25 * * *")
    with pytest.raises(ConfigError, match="VERIFY_SCHEDULE"):
        load_settings()
    monkeypatch.setenv("VERIFY_SCHEDULE", "15 3 * * *")
    assert load_settings().verify_schedule == "15 3 * * *"

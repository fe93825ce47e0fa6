"""The log scan of the real-process fleet tests finds every kind of secret it is given."""

from pathlib import Path

import pytest

from tests.secret_scan import assert_no_secret_in_logs, given_secrets


def fleet_env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "backfleet.toml"
    config.write_text(
        '[namespaces.app.services.db]\nkind = "postgres"\n'
        'url = "postgresql://backup:svc-url-pass@127.0.0.1/app"\n'
        '[namespaces.app.services.tool]\nkind = "command"\ndump_command = ["true"]\n'
        'restore_command = ["true"]\npassword_env = "TOOL_PASS"\n'
    )
    return {
        "BACKFLEET_CONFIG": str(config),
        "BACKFLEET_API_KEYS": "first-api-key:a@example.com:acme,second-api-key",
        "AWS_SECRET_KEY": "aws-secret-value",
        "SECONDARY_AZURE_STORAGE_ACCESS_KEY": "azure-second-key",
        "BACKUP_ENCRYPTION_KEY": "AGE-SECRET-KEY-1EXAMPLE",
        "ALERT_WEBHOOK_URL": "http://127.0.0.1:1/hooks/T0K3N-s3cret",
        "BROKER_URL": "redis://:broker-pass@127.0.0.1:6379/0",
        "TOOL_PASS": "tool-password",
        "HOME": "/root",
    }


def test_every_secret_the_fleet_was_given_is_looked_for(tmp_path: Path) -> None:
    values = set(given_secrets(fleet_env(tmp_path)).values())
    assert {
        "first-api-key",
        "second-api-key",
        "aws-secret-value",
        "azure-second-key",
        "AGE-SECRET-KEY-1EXAMPLE",
        "http://127.0.0.1:1/hooks/T0K3N-s3cret",
        "broker-pass",
        "svc-url-pass",
        "tool-password",
    } <= values
    assert "/root" not in values


@pytest.mark.parametrize(
    "secret", ["second-api-key", "T0K3N-s3cret", "broker-pass", "svc-url-pass", "tool-password"]
)
def test_a_log_holding_a_secret_fails_the_scan(tmp_path: Path, secret: str) -> None:
    env = fleet_env(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "api.log").write_text("INFO started\n")
    assert_no_secret_in_logs(env, logs)  # clean logs pass
    (logs / "worker.log").write_text(f"ERROR could not connect with {secret}\n")
    with pytest.raises(AssertionError, match=r"in worker\.log") as caught:
        assert_no_secret_in_logs(env, logs)
    assert secret not in str(caught.value)  # the failure names the secret, not its value

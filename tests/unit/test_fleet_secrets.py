"""Fleet.secrets(): every secret the fleet was given, for redaction, URL passwords included."""

import pytest

from workers.fleet import Fleet
from workers.redact import redact
from workers.services_config import parse_fleet_config
from workers.settings import Settings
from workers.stores.memory import MemoryStore

SERVICES = """
[namespaces.app.services.db]
kind = "postgres"
url = "postgresql://backup:pg%40pass%2Fword@127.0.0.1:5432/app"
[namespaces.other.services.tool]
kind = "command"
dump_command = ["true"]
restore_command = ["true"]
password_env = "BF_TOOL_PASSWORD"
"""


def test_every_url_password_and_named_password_is_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BF_TOOL_PASSWORD", "tool-password-1")
    settings = Settings(
        broker_url="redis://:broker-pass@127.0.0.1:6379/0",
        lock_redis_url="rediss://locks:lock-pass@127.0.0.1:6380/0",
        result_backend_url="redis://:results-pass@127.0.0.1:6379/1",
        database_url="postgresql+psycopg://catalog:catalog-pass@127.0.0.1/backfleet",
        backfleet_api_keys="api-key-one:a@example.com:acme,api-key-two",
    )
    secondary = Settings(aws_s3_endpoint_url="https://user:endpoint-pass@s3.example.com")
    fleet = Fleet(
        settings=settings,
        config=parse_fleet_config(SERVICES),
        store=MemoryStore(),
        secondary_settings=secondary,
    )

    secrets = fleet.secrets()

    for value in (
        "pg%40pass%2Fword",
        "pg@pass/word",
        "broker-pass",
        "lock-pass",
        "results-pass",
        "catalog-pass",
        "api-key-one",
        "api-key-two",
        "endpoint-pass",
        "tool-password-1",
    ):
        assert value in secrets
    # A message quoting a decoded password the patterns cannot see is masked by value.
    assert redact("auth failed for 'pg@pass/word'", secrets) == "auth failed for '***'"

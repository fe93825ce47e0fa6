"""Each service's policy: its own keys, else its namespace's [retention], else the settings."""

import pytest

from workers.errors import ConfigError
from workers.services_config import RetentionSpec, parse_fleet_config
from workers.settings import Settings

ATLAS = """
namespace = "atlas"
[retention]
keep-hourly = 48

[services.db]
kind = "postgres"
url = "postgresql://backup@db/app"
schedule = "0 * * * *"
max_age = "2h"
rto = "30m"

[services.grafana]
kind = "directory"
path = "/var/lib/grafana"
schedule = "0 1 * * *"
[services.grafana.retention]
keep-hourly = 0
keep-daily = 7

[services.step-ca]
kind = "directory"
path = "/var/lib/step"
schedule = "0 3 * * 0"
max_age = "8d"
verify = "7d"
test_restore = "30d"
[services.step-ca.retention]
keep-hourly = 0
keep-daily = 0
keep-weekly = 4
keep-monthly = 0

[services.config]
kind = "directory"
path = "/etc/app"
"""


@pytest.fixture
def settings() -> Settings:
    return Settings(
        retention_keep_hourly=24,
        retention_keep_daily=30,
        retention_keep_weekly=12,
        retention_keep_monthly=84,
        retention_keep_yearly=0,
        backup_max_age="3h",
        backup_rto="4h",
        verify_every="1d",
        test_restore_every="7d",
    )


def counts(spec: RetentionSpec) -> tuple[int | None, ...]:
    return (
        spec.keep_hourly,
        spec.keep_daily,
        spec.keep_weekly,
        spec.keep_monthly,
        spec.keep_yearly,
    )


def test_a_services_own_keys_win(settings: Settings) -> None:
    step_ca = parse_fleet_config(ATLAS).policy_of("atlas", "step-ca", settings)
    assert counts(step_ca.retention) == (0, 0, 4, 0, 0)
    assert (step_ca.max_age, step_ca.verify, step_ca.test_restore) == (
        8 * 86400,
        7 * 86400,
        30 * 86400,
    )
    assert step_ca.rto == 4 * 3600  # BACKUP_RTO


def test_unset_counts_fall_back_to_the_namespace_then_the_settings(settings: Settings) -> None:
    config = parse_fleet_config(ATLAS)
    grafana = config.policy_of("atlas", "grafana", settings)
    assert counts(grafana.retention) == (0, 7, 12, 84, 0)
    db = config.policy_of("atlas", "db", settings)
    assert counts(db.retention) == (48, 30, 12, 84, 0)  # the namespace's keep-hourly
    assert (db.max_age, db.rto) == (2 * 3600, 30 * 60)


def test_max_age_follows_the_settings_only_for_a_service_on_the_regular_schedule(
    settings: Settings,
) -> None:
    config = parse_fleet_config(ATLAS)
    assert config.policy_of("atlas", "config", settings).max_age == 3 * 3600
    # A schedule of its own and no max_age: the freshness check derives it from the cron.
    assert config.policy_of("atlas", "grafana", settings).max_age is None


@pytest.mark.parametrize(
    ("key", "value"),
    [("max_age", '"soon"'), ("rto", '"0s"'), ("verify", '"-1d"'), ("test_restore", '"7 days"')],
)
def test_a_bad_duration_names_the_key(key: str, value: str) -> None:
    text = f'[services.x]\nkind = "directory"\npath = "/x"\n{key} = {value}\n'
    with pytest.raises(ConfigError, match=rf"services\.x\.{key}: .*is not a duration"):
        parse_fleet_config(text)


def test_a_bad_retention_count_names_the_service() -> None:
    text = (
        '[services.x]\nkind = "directory"\npath = "/x"\n[services.x.retention]\nkeep-daily = -2\n'
    )
    with pytest.raises(ConfigError, match=r"services\.x\.retention\.keep-daily"):
        parse_fleet_config(text)
    text = text.replace("keep-daily = -2", "keep-dayly = 2")
    with pytest.raises(ConfigError, match=r"services\.x\.retention\.keep-dayly"):
        parse_fleet_config(text)

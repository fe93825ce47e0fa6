"""docs/policies.md: the Atlas and VAPORA services files are valid, say what the page says,
and the page shows them as they are in docs/examples/ (issue 19)."""

import re

from tests.deploy.known import ROOT
from workers.services_config import parse_fleet_config
from workers.settings import Settings

EXAMPLES = ROOT / "docs" / "examples"
PAGE = ROOT / "docs" / "policies.md"
DAY, HOUR = 86400, 3600


def test_the_page_shows_the_files_as_they_are() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", PAGE.read_text(), re.S)
    assert blocks == [(EXAMPLES / f"{name}.toml").read_text() for name in ("atlas", "vapora")]


def test_atlas_says_what_the_page_says() -> None:
    config = parse_fleet_config((EXAMPLES / "atlas.toml").read_text())
    settings = Settings()
    db = config.policy_of("atlas", "postgres", settings)
    grafana = config.policy_of("atlas", "grafana", settings)
    step_ca = config.policy_of("atlas", "step-ca", settings)
    assert (db.retention.keep_hourly, db.max_age, db.rto) == (48, 2 * HOUR, 30 * 60)
    assert (grafana.retention.keep_daily, grafana.max_age) == (7, None)  # from its schedule
    assert (step_ca.retention.keep_weekly, step_ca.max_age) == (4, 8 * DAY)
    assert step_ca.test_restore == 30 * DAY and step_ca.rto == HOUR


def test_vapora_says_what_the_page_says() -> None:
    config = parse_fleet_config((EXAMPLES / "vapora.toml").read_text())
    surreal = config.policy_of("vapora", "surrealdb", Settings())
    spec = config.services_of("vapora")["surrealdb"]
    assert (surreal.retention.keep_daily, surreal.retention.keep_monthly) == (30, 84)
    assert surreal.test_restore == 30 * DAY and spec.size_drop == 0.5
    assert spec.test_restore_command and spec.count_command

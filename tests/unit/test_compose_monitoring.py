"""compose/: the Prometheus alert rules and the Grafana dashboard load, and ask for real metrics.

The rules are checked against Prometheus' rule-file schema with every PromQL
expression parsed (promql-parser, the Rust parser), and with `promtool check
rules` too where promtool is installed. Every metric either file names must be
one /metrics exports, so a renamed metric cannot silently blind an alert. Each rule
has unit tests (prometheus/alerts.test.yml: it fires, and it does not), which
`promtool test rules` runs where promtool is installed (scripts/test-deps.sh installs
Debian's `prometheus` package for it).
"""

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import promql_parser
import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from api.main import create_app
from tests.health_fleet import make_fleet, take_backup
from workers.catalog.db import dispose_engines
from workers.monitoring.notify import check_staleness
from workers.operations.verify import verify_backups

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
RULES = COMPOSE / "prometheus" / "alerts.yml"
RULE_TESTS = COMPOSE / "prometheus" / "alerts.test.yml"
PROMTOOL = shutil.which("promtool")
NO_PROMTOOL = "promtool is not installed: scripts/test-deps.sh installs Debian's `prometheus`"
DASHBOARD = COMPOSE / "grafana" / "dashboards" / "backfleet.json"
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
METRIC = re.compile(r"\bbackfleet_[a-z_]+\b")


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


class Rule(BaseModel):
    """One entry of a Prometheus rule group (docs: configuration/recording_rules)."""

    model_config = ConfigDict(extra="forbid")

    alert: str | None = None
    record: str | None = None
    expr: str
    for_: str | None = Field(default=None, alias="for")
    keep_firing_for: str | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}

    @field_validator("for_", "keep_firing_for")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None and not DURATION.match(value):
            raise ValueError(f"{value!r} is not a Prometheus duration")
        return value

    @field_validator("expr")
    @classmethod
    def _promql(cls, value: str) -> str:
        promql_parser.parse(value)  # ValueError names the problem
        return value

    @model_validator(mode="after")
    def _alert_or_record(self) -> "Rule":
        if (self.alert is None) == (self.record is None):
            raise ValueError("a rule has exactly one of `alert` and `record`")
        return self


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    interval: str | None = None
    rules: list[Rule]


class RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    groups: list[Group]


def exported_metrics(tmp_path: Path) -> set[str]:
    """Every metric name /metrics declares (a family with no sample yet still counts)."""
    fleet = make_fleet(tmp_path)
    take_backup(fleet)
    verify_backups(fleet)
    check_staleness(fleet)
    app = create_app(lambda: fleet)
    app.state.queue_depths = lambda _url: {"backup": 0}
    with TestClient(app) as client:
        text = client.get("/metrics").text
    names = set()
    for name in re.findall(r"^# TYPE (\S+) \S+$", text, flags=re.MULTILINE):
        names.add(name)  # counters are declared with their _total already
    assert len(names) >= 15
    return names


def test_the_alert_rules_load_and_use_exported_metrics(tmp_path: Path) -> None:
    rules = RuleFile.model_validate(yaml.safe_load(RULES.read_text()))
    alerts = [rule for group in rules.groups for rule in group.rules]
    names = [rule.alert for rule in alerts]
    assert len(names) == len(set(names)) >= 5
    assert {"BackfleetBackupStale", "BackfleetVerificationFailed"} <= set(names)
    for rule in alerts:
        assert rule.labels.get("severity") in ("critical", "warning"), rule.alert
        assert rule.annotations.get("summary"), rule.alert
        for text in rule.annotations.values():  # Go templates: balanced actions
            assert text.count("{{") == text.count("}}"), rule.alert
    exported = exported_metrics(tmp_path)
    used = {name for rule in alerts for name in METRIC.findall(rule.expr)}
    assert used and used <= exported, used - exported


def test_a_broken_rule_is_refused() -> None:
    with pytest.raises(ValueError):
        Rule.model_validate({"alert": "X", "expr": "sum(rate(x[5m])"})
    with pytest.raises(ValueError):
        Rule.model_validate({"alert": "X", "expr": "up == 0", "for": "5 minutes"})
    with pytest.raises(ValueError):
        Rule.model_validate({"expr": "up == 0"})


def promtool(*args: str, cwd: Path = COMPOSE) -> None:
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_promtool_accepts_the_rules() -> None:
    promtool("check", "rules", str(RULES))


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_the_rules_pass_their_unit_tests() -> None:
    promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_promtool_accepts_the_prometheus_config_with_its_alertmanager(tmp_path: Path) -> None:
    config = yaml.safe_load((COMPOSE / "prometheus" / "prometheus.yml").read_text())
    config["rule_files"] = [str(RULES)]  # where the container mounts it: here, the repo's
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    promtool("check", "config", str(tmp_path / "prometheus.yml"))


def test_every_alert_rule_is_unit_tested_firing_and_not_firing() -> None:
    """alerts.test.yml shows each rule of alerts.yml firing at some time, and quiet at
    another (the check that runs without promtool; promtool runs them where it is)."""
    rules = RuleFile.model_validate(yaml.safe_load(RULES.read_text()))
    names = {rule.alert for group in rules.groups for rule in group.rules}
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert tests["rule_files"] == [RULES.name]
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in tests["tests"]:
        for case in test["alert_rule_test"]:
            expected = case["exp_alerts"]
            (fires if expected else quiet).add(case["alertname"])
            for alert in expected:  # labels and annotations, as promtool compares them
                assert alert["exp_labels"]["severity"] in ("critical", "warning")
                assert alert["exp_annotations"]["summary"], case["alertname"]
    assert fires == names, names - fires
    assert quiet == names, names - quiet


class Target(BaseModel):
    refId: str
    expr: str


class Panel(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    type: Literal["stat", "timeseries", "table", "gauge", "bargauge", "text"]
    title: str
    gridPos: dict[str, int]
    targets: list[Target]


class Dashboard(BaseModel):
    model_config = ConfigDict(extra="allow")

    uid: str
    title: str
    schemaVersion: int
    panels: list[Panel]
    templating: dict[str, list[dict[str, Any]]]


def test_the_dashboard_is_valid_json_asking_for_exported_metrics(tmp_path: Path) -> None:
    dashboard = Dashboard.model_validate(json.loads(DASHBOARD.read_text()))
    assert dashboard.uid == "backfleet"
    ids = [panel.id for panel in dashboard.panels]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard.templating["list"]}
    assert variables == {"datasource", "namespace"}
    for panel in dashboard.panels:
        assert {"x", "y", "w", "h"} <= set(panel.gridPos) and panel.gridPos["w"] <= 24
        assert panel.targets, panel.title
    exprs = [target.expr for panel in dashboard.panels for target in panel.targets]
    for expr in exprs:
        # Grafana substitutes its variables before Prometheus sees the query.
        promql_parser.parse(expr.replace("$namespace", "app"))
        assert "$" not in expr.replace("$namespace", ""), expr
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    exported = exported_metrics(tmp_path)
    assert used and used <= exported, used - exported

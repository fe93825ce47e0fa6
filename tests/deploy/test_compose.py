"""compose/docker-compose.yml: valid Compose, and it passes Backfleet only what Backfleet reads."""

import importlib.resources
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.known import COMPOSE, backfleet_reads, settings_variables
from workers.queues import QUEUES

COMPOSE_FILE = COMPOSE / "docker-compose.yml"
ENV_EXAMPLE = COMPOSE / ".env.example"
ONE_SHOT = {"migrate", "store-init"}
VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)")


def compose_schema() -> dict[str, Any]:
    """The compose-spec JSON schema, as vendored by the check-jsonschema package."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath("compose-spec.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def backfleet_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the Backfleet image."""
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def test_the_file_is_valid_against_the_compose_spec(compose: dict[str, Any]) -> None:
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in jsonschema.Draft202012Validator(compose_schema()).iter_errors(compose)
    ]
    assert errors == []


def test_the_schema_check_catches_a_mistake(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["healthcheck"]["intervall"] = "10s"
    broken["services"]["redis"]["depends_on"] = {"api": {"condition": "when_ready"}}
    validator = jsonschema.Draft202012Validator(compose_schema())
    assert len(list(validator.iter_errors(broken))) >= 2


def test_backfleet_services_pass_only_variables_backfleet_reads(
    backfleet_services: dict[str, dict[str, Any]],
) -> None:
    known = backfleet_reads([COMPOSE / "backfleet.toml"])
    assert {"BROKER_URL", "REDIS_URL", "APP_DB_PASSWORD"} <= known
    assert "BACKFLEET_NO_SUCH_SETTING" not in known
    for name, service in backfleet_services.items():
        unknown = sorted(set(service["environment"]) - known)
        assert unknown == [], f"service {name} passes variables Backfleet does not read"


def test_every_variable_the_file_uses_is_in_env_example_and_back() -> None:
    used = set(VARIABLE.findall(COMPOSE_FILE.read_text()))
    listed = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert used - listed == set(), "used by docker-compose.yml but missing from .env.example"
    assert listed - used == set(), "listed in .env.example but unused"


def test_secrets_come_from_env_only(compose: dict[str, Any]) -> None:
    """No literal password or key in the file: every secret-looking value is a ${…}."""
    secret_name = re.compile(r"PASSWORD|SECRET|_KEY|KEYS|AUTH|TOKEN", re.IGNORECASE)
    for name, service in compose["services"].items():
        for variable, value in (service.get("environment") or {}).items():
            if secret_name.search(variable) and value not in (None, ""):
                assert "${" in str(value), f"{name}: {variable} must come from .env"


def test_long_running_services_have_healthchecks_and_wait_for_what_they_need(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name, service in services.items():
        if name not in ONE_SHOT:
            assert "test" in service.get("healthcheck", {}), f"{name} has no healthcheck"
        for dependency, rule in (service.get("depends_on") or {}).items():
            expected = (
                "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            )
            assert rule["condition"] == expected, f"{name} -> {dependency}"
            assert dependency in services


def test_workers_split_the_queues_and_scale(backfleet_services: dict[str, dict[str, Any]]) -> None:
    queues_of: dict[str, set[str]] = {}
    for name, service in backfleet_services.items():
        command = service.get("command", [""])
        if command[0] == "worker":
            queues_of[name] = set(command[command.index("--queues") + 1].split(","))
    assert queues_of == {
        "worker-backup": {"backup", "restore"},
        "worker-ops": {"audit", "verify", "maintenance"},
    }
    assert set().union(*queues_of.values()) == set(QUEUES)
    assert backfleet_services["worker-backup"]["deploy"]["replicas"] >= 2
    roles = [service.get("command", [""])[0] for service in backfleet_services.values()]
    assert roles.count("beat") == 1
    assert "replicas" not in backfleet_services["beat"].get("deploy", {})


def test_the_backup_worker_is_one_process_and_restarts(
    backfleet_services: dict[str, dict[str, Any]],
) -> None:
    """--pool threads, one task: Backfleet's own time limits; past the hard one the
    worker exits and `restart` starts it again (docs/fleet.md)."""
    backup = backfleet_services["worker-backup"]
    command = backup["command"]
    assert command[command.index("--pool") + 1] == "threads"
    assert command[command.index("--concurrency") + 1] == "1"
    assert backup["restart"] in ("unless-stopped", "always", "on-failure")
    # its two parts in flight (docs/configuration/memory.md), the rest of the settings shared
    assert backup["environment"]["BACKUP_UPLOAD_CONCURRENCY"] == "${BACKUP_UPLOAD_CONCURRENCY:-2}"
    assert "BROKER_URL" in backup["environment"]
    assert "--pool" not in backfleet_services["worker-ops"]["command"]  # prefork, -c 2


def test_redis_never_evicts_and_persists(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--appendonly") + 1] == "yes"


def test_flower_is_behind_basic_auth(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])


def test_every_bind_mount_exists(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                path = (COMPOSE / source).resolve()
                assert path.exists(), f"{name} mounts {source}, which does not exist"


def test_prometheus_loads_the_alert_rules_and_scrapes_the_api() -> None:
    config = yaml.safe_load((COMPOSE / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    targets = {
        job["job_name"]: (job.get("metrics_path", "/metrics"), job["static_configs"][0]["targets"])
        for job in config["scrape_configs"]
    }
    assert targets["backfleet-api"] == ("/metrics", ["api:8080"])


def test_prometheus_sends_its_alerts_to_alertmanager(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((COMPOSE / "prometheus" / "prometheus.yml").read_text())
    (manager,) = config["alerting"]["alertmanagers"]
    assert manager["static_configs"] == [{"targets": ["alertmanager:9093"]}]
    service = compose["services"]["alertmanager"]
    assert re.fullmatch(r"prom/alertmanager:v\d+\.\d+\.\d+", service["image"])  # pinned
    assert service["ports"] == ["127.0.0.1:9093:9093"]
    assert "./alertmanager:/etc/alertmanager:ro" in service["volumes"]
    assert service["entrypoint"] == ["/bin/sh", "/etc/alertmanager/start.sh"]
    # The receiver's URL is the operator's, from .env; nothing is committed.
    assert service["environment"] == {"ALERTMANAGER_WEBHOOK_URL": "${ALERTMANAGER_WEBHOOK_URL:-}"}
    assert compose["services"]["prometheus"]["depends_on"]["alertmanager"] == {
        "condition": "service_healthy"
    }


def alertmanager_config(name: str) -> dict[str, Any]:
    return yaml.safe_load((COMPOSE / "alertmanager" / name).read_text())  # type: ignore[no-any-return]


def test_alertmanager_notifies_the_webhook_from_a_file_and_says_when_alerts_resolve() -> None:
    config = alertmanager_config("alertmanager.yml")
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    (webhook,) = receivers[config["route"]["receiver"]]["webhook_configs"]
    assert "url" not in webhook and webhook["send_resolved"] is True
    assert webhook["url_file"] in (COMPOSE / "alertmanager" / "start.sh").read_text()
    assert config["route"]["repeat_interval"] == "24h"
    quiet = alertmanager_config("no-receiver.yml")
    (nobody,) = quiet["receivers"]
    assert nobody == {"name": quiet["route"]["receiver"]}  # notifies no one


def run_alertmanager_start(tmp_path: Path, url: str) -> tuple[str, str, Path]:
    """compose/alertmanager/start.sh with its paths moved under tmp_path and a stand-in
    alertmanager that prints what it was given: (its stdout, start.sh's stderr, url file)."""
    script = (COMPOSE / "alertmanager" / "start.sh").read_text()
    tmp_path.mkdir()
    fake = tmp_path / "alertmanager"
    fake.write_text('#!/bin/sh\necho "$@"\necho "env:${ALERTMANAGER_WEBHOOK_URL:-unset}"\n')
    fake.chmod(0o755)
    script = script.replace("/tmp/alertmanager", str(tmp_path / "run"))
    script = script.replace("/bin/alertmanager", str(fake))
    (tmp_path / "start.sh").write_text(script)
    env = {"PATH": "/usr/bin:/bin", "ALERTMANAGER_WEBHOOK_URL": url}
    done = subprocess.run(
        ["/bin/sh", str(tmp_path / "start.sh")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr, tmp_path / "run" / "webhook-url"


def test_alertmanager_start_writes_the_url_for_it_alone_or_notifies_nobody(
    tmp_path: Path,
) -> None:
    url = "https://hooks.example.com/services/T0K3N-s3cret"
    out, err, written = run_alertmanager_start(tmp_path / "set", url)
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in out
    assert "--storage.path=/alertmanager" in out
    assert written.read_text() == url and written.stat().st_mode & 0o077 == 0
    assert "T0K3N" not in out.replace(url, "") + err and "env:unset" in out
    out, err, written = run_alertmanager_start(tmp_path / "empty", "")
    assert "--config.file=/etc/alertmanager/no-receiver.yml" in out
    assert "notify nobody" in err and not written.exists()


def test_grafana_provisions_the_dashboard_folder(compose: dict[str, Any]) -> None:
    provider = yaml.safe_load(
        (COMPOSE / "grafana" / "provisioning" / "dashboards" / "backfleet.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{path}:ro" in mounts


def test_the_services_file_is_valid() -> None:
    from workers.services_config import load_fleet_config

    config = load_fleet_config(Path(COMPOSE / "backfleet.toml"), namespace_override=None)
    assert config.default_namespace == "app"


def interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message}, from `values`."""

    def one(match: re.Match[str]) -> str:
        name, operator, rest = match["name"], match["op"] or "", match["rest"] or ""
        value = values.get(name, "")
        if operator == ":?" and not value:
            raise AssertionError(f"{name} is required: {rest}")
        return value or (rest if operator == ":-" else "")

    pattern = r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?:(?P<op>:-|:\?)(?P<rest>[^}]*))?\}"
    return re.sub(pattern, one, text)


def test_the_example_env_gives_every_backfleet_service_valid_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workers.settings import load_settings

    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            values[name] = value
    interpolated = yaml.safe_load(interpolate(COMPOSE_FILE.read_text(), values))
    validator = jsonschema.Draft202012Validator(compose_schema())
    assert list(validator.iter_errors(interpolated)) == []
    for name, service in interpolated["services"].items():
        if "build" not in service:
            continue
        for variable in settings_variables():  # nothing from the test's own environment
            monkeypatch.delenv(variable, raising=False)
        for variable, value in service["environment"].items():
            if value is not None:  # `NAME:` with no value leaves it unset, as compose does
                monkeypatch.setenv(variable, str(value))
        settings = load_settings()  # raises ConfigError naming any invalid variable
        assert settings.object_store_location_type == "s3", name
        assert settings.database_url.startswith("postgresql://backfleet:")

"""compose/k8s: valid against the Kubernetes schemas (kubernetes-validate, strict), and coherent."""

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.known import K8S, backfleet_reads, settings_variables
from workers.queues import QUEUES
from workers.services_config import load_fleet_config

# Oldest and newest minor versions still commonly run.
KUBERNETES_VERSIONS = ["1.28.0", "1.33.0"]
# Not in the Kubernetes schemas: the kustomize file and KEDA's custom resources,
# checked by the tests below instead.
CUSTOM_KINDS = {"Kustomization", "ScaledObject", "TriggerAuthentication"}
# KEDA's ScaledObject fields (keda.sh/v1alpha1), for a typo check.
SCALED_OBJECT_FIELDS = {
    "scaleTargetRef",
    "pollingInterval",
    "cooldownPeriod",
    "initialCooldownPeriod",
    "idleReplicaCount",
    "minReplicaCount",
    "maxReplicaCount",
    "fallback",
    "advanced",
    "triggers",
}
ADVANCED_FIELDS = {
    "restoreToOriginalReplicaCount",
    "horizontalPodAutoscalerConfig",
    "scalingModifiers",
}
# Deepest task step a worker may be in when told to stop, in seconds (worker-backup.yaml).
LONGEST_BACKUP_STEP = 3600


def resources() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in resources() if doc["kind"] == kind}


def pod_specs() -> dict[str, dict[str, Any]]:
    specs = {name: d["spec"]["template"]["spec"] for name, d in by_kind("Deployment").items()}
    specs.update({name: d["spec"]["template"]["spec"] for name, d in by_kind("Job").items()})
    return specs


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_resource_is_valid_for_kubernetes(version: str) -> None:
    checked = 0
    for doc in resources():
        if doc["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 12


def test_the_validator_catches_a_mistake() -> None:
    deployment = json.loads(json.dumps(by_kind("Deployment")["backfleet-worker-backup"]))
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 3600  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_file() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_containers_read_only_backfleet_settings(tmp_path: Path) -> None:
    known = backfleet_reads([services_file(tmp_path)])
    settings = by_kind("ConfigMap")["backfleet-settings"]["data"]
    assert set(settings) - known == set()
    secret_keys = {
        line.split("=", 1)[0]
        for line in (K8S / "secrets.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert secret_keys - known == set()
    for name, spec in pod_specs().items():
        for container in spec["containers"]:
            env = {item["name"] for item in container.get("env", [])}
            assert env - known == set(), f"{name} passes variables Backfleet does not read"


def services_file(directory: Path) -> Path:
    """The services file of the ConfigMap, written out to be read as the worker reads it."""
    path = directory / "backfleet.toml"
    path.write_text(by_kind("ConfigMap")["backfleet-services"]["data"]["backfleet.toml"])
    return path


def test_the_services_file_is_valid_and_names_folders_inside_the_mount(tmp_path: Path) -> None:
    config = load_fleet_config(services_file(tmp_path), namespace_override=None)
    worker = pod_specs()["backfleet-worker-backup"]["containers"][0]
    mounts = {mount["mountPath"] for mount in worker["volumeMounts"]}
    for spec in config.services_of(config.default_namespace).values():
        if spec.kind == "directory":
            folder = Path(str(spec.path))
            assert str(folder) not in mounts, "a directory restore cannot swap a mount point"
            assert str(folder.parent) in mounts


def test_pods_run_unprivileged_with_requests_and_secrets_from_secrets() -> None:
    for name, spec in pod_specs().items():
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            requests = container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(requests), name
            refs = [ref.get("secretRef", {}).get("name") for ref in container.get("envFrom", [])]
            assert "backfleet" in refs, name


def test_worker_memory_covers_the_measured_peak() -> None:
    """bench/RESULTS.md (session 12): the one-process backup worker peaks at <= 150 MiB
    (PSS); plus pg_dump and its pipe."""
    worker = pod_specs()["backfleet-worker-backup"]["containers"][0]
    request = worker["resources"]["requests"]["memory"]
    assert request.endswith("Mi") and int(request[:-2]) >= 150 + 40


def test_the_backup_worker_is_one_process() -> None:
    """--pool threads, one task per pod: Backfleet's own time limits (docs/fleet.md)."""
    args = pod_specs()["backfleet-worker-backup"]["containers"][0]["args"]
    assert args[args.index("--pool") + 1] == "threads"
    assert args[args.index("--concurrency") + 1] == "1"
    assert "--pool" not in pod_specs()["backfleet-worker-ops"]["containers"][0]["args"]


def test_workers_split_the_queues_and_beat_is_single() -> None:
    queues: set[str] = set()
    for name, spec in pod_specs().items():
        args = spec["containers"][0]["args"]
        if args[0] == "worker":
            queues |= set(args[args.index("--queues") + 1].split(","))
            assert args[args.index("--concurrency") + 1] in ("1", "2"), name
    assert queues == set(QUEUES)
    beat = by_kind("Deployment")["backfleet-beat"]["spec"]
    assert beat["replicas"] == 1
    assert beat["strategy"]["type"] == "Recreate"
    assert "replicas" not in by_kind("Deployment")["backfleet-worker-backup"]["spec"]


def test_migrations_run_as_a_job() -> None:
    job = by_kind("Job")["backfleet-migrate"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_disruption_budgets_cover_api_and_workers() -> None:
    selected = {
        pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for pdb in by_kind("PodDisruptionBudget").values()
    }
    assert {"api", "worker-backup", "worker-ops"} <= selected


def test_scaled_object_counts_waiting_and_running_tasks_and_waits_for_a_step() -> None:
    scaled = by_kind("ScaledObject")["backfleet-worker-backup"]
    spec = scaled["spec"]
    assert set(spec) <= SCALED_OBJECT_FIELDS
    assert set(spec["advanced"]) <= ADVANCED_FIELDS
    target = by_kind("Deployment")[spec["scaleTargetRef"]["name"]]
    pod = target["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= LONGEST_BACKUP_STEP
    args = pod["containers"][0]["args"]
    worker_queues = set(args[args.index("--queues") + 1].split(","))

    triggers = {trigger["name"]: trigger for trigger in spec["triggers"]}
    formula = spec["advanced"]["scalingModifiers"]["formula"]
    assert set(formula.replace("+", " ").split()) == set(triggers)
    lists = {t["metadata"]["listName"] for t in triggers.values() if t["type"] == "redis"}
    assert lists == worker_queues
    running = [t for t in triggers.values() if t["type"] == "prometheus"]
    assert "flower_worker_number_of_currently_executing_tasks" in running[0]["metadata"]["query"]
    assert "backfleet-worker-backup" in running[0]["metadata"]["query"]

    auth = by_kind("TriggerAuthentication")
    for trigger in triggers.values():
        if "authenticationRef" in trigger:
            assert trigger["authenticationRef"]["name"] in auth
    scale_down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= 300


def test_the_settings_and_example_secret_are_valid_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workers.settings import load_settings

    for variable in settings_variables():
        monkeypatch.delenv(variable, raising=False)
    values = dict(by_kind("ConfigMap")["backfleet-settings"]["data"])
    for line in (K8S / "secrets.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            values[name] = value
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.enable_regular_backups is True
    assert settings.backup_encryption_key is None  # empty in the example: unset

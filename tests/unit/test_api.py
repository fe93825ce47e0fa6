"""The HTTP API against a real fleet: a SQLite catalog, a local store and a recording enqueue."""

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.types import Message as AsgiMessage
from starlette.types import Receive, Scope, Send

import api.deps
from api.limits import BodyLimitMiddleware, MiB
from api.main import create_app
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.hook_runs import record_hook_run
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import PENDING, SUCCESS, Backup, Restore
from workers.errors import ConfigError
from workers.fleet import Fleet
from workers.repository.manifest import ArtifactEntry, Manifest, manifest_key
from workers.repository.manifest_mac import MacKey
from workers.services_config import parse_fleet_config
from workers.settings import Settings
from workers.stores.local import LocalStore

BASE = "/athena/api/v1"
KEY = "k1-secret-value"
OTHER_KEY = "k2-other-value"
AUTH = {"Authorization": KEY}
SIGNING_KEY = "a-signing-key-of-at-least-32-characters"
BROKER_PASSWORD = "br0ker-pa55word"

CONFIG = """
namespace = "app"

[namespaces.app.services.postgres]
kind = "postgres"
url = "postgresql://backup@db:5432/app"

[namespaces.app.services.gitserver]
kind = "directory"
path = "/data/git"

[namespaces.app.services.settings]
kind = "sqlite"
path = "/data/settings.db"
config = true

[namespaces.team-b.services.files]
kind = "directory"
path = "/data/files"
"""


@dataclass
class RecordingEnqueue:
    calls: list[tuple[str, dict[str, object], str]] = field(default_factory=list)

    def __call__(self, task: str, kwargs: dict[str, object], queue: str) -> str:
        self.calls.append((task, dict(kwargs), queue))
        return f"task-{len(self.calls)}"


@dataclass
class Env:
    client: TestClient
    fleet: Fleet
    enqueue: RecordingEnqueue
    store: LocalStore

    @property
    def url(self) -> str:
        return self.fleet.settings.database_url


def make_fleet(tmp_path: Path, api_keys: str) -> Fleet:
    database_url = f"sqlite:///{tmp_path / 'catalog.db'}"
    upgrade_catalog(database_url)
    store = LocalStore(tmp_path / "store")
    store.init()
    settings = Settings(
        database_url=database_url,
        backfleet_api_keys=SecretStr(api_keys),
        object_store_location_local=tmp_path / "store",
        backup_signing_key=SecretStr(SIGNING_KEY),
    )
    return Fleet(settings=settings, config=parse_fleet_config(CONFIG), store=store)


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("REDIS_URL", raising=False)
    # A port nothing listens on: the broker check fails at once, without any network.
    monkeypatch.setenv("BROKER_URL", f"redis://:{BROKER_PASSWORD}@127.0.0.1:1/0")
    yield
    dispose_engines()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    fleet = make_fleet(tmp_path, f"{KEY}:ops@example.com:acme,{OTHER_KEY}")
    enqueue = RecordingEnqueue()
    assert isinstance(fleet.store, LocalStore)
    with TestClient(create_app(lambda: fleet, enqueue)) as client:
        yield Env(client=client, fleet=fleet, enqueue=enqueue, store=fleet.store)


def write_manifest(
    store: LocalStore, namespace: str, timestamp: str, *, signed: bool = True
) -> None:
    """A backup found only in the store, signed with the fleet's key unless `signed` is False."""
    kinds = {"postgres": ("postgres", "pgdump"), "gitserver": ("directory", "tar")}
    kinds["settings"] = ("sqlite", "sqlite")
    artifacts = [
        ArtifactEntry(
            service=service,
            key=f"{namespace}/{timestamp}/{service}.{fmt}",
            format=fmt,
            compression="none",
            size=3,
            sha256="0" * 64,
            source_size=3,
            source={"kind": kind},
        )
        for service, (kind, fmt) in kinds.items()
    ]
    manifest = Manifest(
        namespace=namespace,
        timestamp=timestamp,
        started_at="2023-02-02T17:03:15Z",
        finished_at="2023-02-02T17:04:15Z",
        artifacts=artifacts,
    )
    signer = MacKey.derive(SIGNING_KEY) if signed else None
    store.put_object(manifest_key(namespace, timestamp), manifest.to_bytes(signer))


def finish_backups(url: str, status: str = SUCCESS) -> None:
    with session_scope(url) as session:
        for backup in session.query(Backup).all():
            backup.status = status


# --- authentication ---


def test_missing_key_is_401_json(env: Env) -> None:
    response = env.client.post(f"{BASE}/ondemandbackup", json={})
    assert response.status_code == 401
    assert response.json()["code"] == 401
    assert "Authorization" in response.json()["message"]
    assert response.headers["www-authenticate"] == "Bearer"
    assert env.enqueue.calls == []


def test_wrong_key_is_401(env: Env) -> None:
    for value in ("nope", f"Bearer {KEY}x", f"Basic {KEY}", KEY[:-1], ""):
        response = env.client.get(f"{BASE}/backup/latest", headers={"Authorization": value})
        assert response.status_code == 401, value
        assert KEY not in response.text


@pytest.mark.parametrize("value", [KEY, f"Bearer {KEY}", f"bearer  {KEY} ", OTHER_KEY])
def test_both_header_forms_and_every_key_are_accepted(env: Env, value: str) -> None:
    response = env.client.get(f"{BASE}/backup/latest", headers={"Authorization": value})
    assert response.status_code == 404  # authenticated: there is just no backup yet


def test_owner_of_the_key_is_recorded_as_requester(env: Env) -> None:
    env.client.post(f"{BASE}/ondemandbackup", headers=AUTH, json={})
    finish_backups(env.url)
    env.client.post(f"{BASE}/ondemandbackup", headers={"Authorization": OTHER_KEY}, json={})
    with session_scope(env.url) as session:
        by = [b.requested_by for b in session.query(Backup).order_by(Backup.id)]
    assert by == ["ops@example.com", "api-key"]


def test_no_configured_keys_refuses_everything(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, "")
    enqueue = RecordingEnqueue()
    client = TestClient(create_app(lambda: fleet, enqueue))
    response = client.post(f"{BASE}/ondemandbackup", headers={"Authorization": "anything"})
    assert response.status_code == 401
    assert "BACKFLEET_API_KEYS is empty" in response.json()["message"]
    assert enqueue.calls == []


def test_authentication_comes_before_body_parsing(env: Env) -> None:
    response = env.client.post(f"{BASE}/ondemandbackup", content=b"{not json")
    assert response.status_code == 401


# --- on-demand backups ---


def test_ondemand_backup_is_accepted_and_enqueued_once(env: Env) -> None:
    response = env.client.post(f"{BASE}/ondemandbackup", headers=AUTH, json={})
    assert response.status_code == 202
    body = response.json()
    assert body["code"] == 202
    prefix = "Request Accepted with timestamp "
    assert body["message"].startswith(prefix)
    timestamp = body["message"].removeprefix(prefix)
    datetime.strptime(timestamp, "%Y-%m-%dt%H-%M-%S")
    assert env.enqueue.calls == [
        ("tasks.backup.run_backup", {"namespace": "app", "timestamp": timestamp}, "backup")
    ]
    with session_scope(env.url) as session:
        backup = queries.get_backup(session, namespace="app", timestamp=timestamp)
        assert backup is not None
        assert backup.status == PENDING
        assert backup.trigger == "api"
        assert backup.task_id == "task-1"
        assert backup.services == ["gitserver", "postgres", "settings"]
        assert backup.only_config is False


def test_empty_body_and_form_content_type_are_accepted(env: Env) -> None:
    response = env.client.post(f"{BASE}/ondemandbackup", headers=AUTH)  # no bytes at all
    assert response.status_code == 202
    finish_backups(env.url)
    # `curl -d '{"onlyConfig": true}'` sends application/x-www-form-urlencoded.
    response = env.client.post(
        f"{BASE}/ondemandbackup",
        headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
        content=b'{"onlyConfig": true}',
    )
    assert response.status_code == 202
    assert len(env.enqueue.calls) == 2


def test_second_backup_while_pending_is_409_and_not_enqueued(env: Env) -> None:
    first = env.client.post(f"{BASE}/ondemandbackup", headers=AUTH, json={})
    timestamp = first.json()["message"].rsplit(" ", 1)[1]
    second = env.client.post(f"{BASE}/ondemandbackup", headers=AUTH, json={"onlyConfig": True})
    assert second.status_code == 409
    assert second.json()["code"] == 409
    assert timestamp in second.json()["message"]
    assert len(env.enqueue.calls) == 1
    with session_scope(env.url) as session:
        assert session.query(Backup).count() == 1


def test_only_config_backs_up_only_config_services(env: Env) -> None:
    response = env.client.post(f"{BASE}/ondemandbackup", headers=AUTH, json={"onlyConfig": True})
    assert response.status_code == 202
    with session_scope(env.url) as session:
        backup = session.query(Backup).one()
        assert backup.services == ["settings"]
        assert backup.only_config is True


def test_only_config_without_config_services_is_422(env: Env) -> None:
    response = env.client.post(
        f"{BASE}/ondemandbackup", headers=AUTH, json={"onlyConfig": True, "namespace": "team-b"}
    )
    assert response.status_code == 422
    assert "config = true" in response.json()["message"]
    assert env.enqueue.calls == []


def test_backup_of_another_namespace(env: Env) -> None:
    response = env.client.post(f"{BASE}/ondemandbackup", headers=AUTH, json={"namespace": "team-b"})
    assert response.status_code == 202
    assert env.enqueue.calls[0][1]["namespace"] == "team-b"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"onlyconfig": True}, "onlyconfig"),
        ({"only_config": True}, "only_config"),
        ({"onlyConfig": "maybe"}, "onlyConfig"),
        ({"namespace": "../x"}, "namespace"),
        ({"namespace": "App"}, "namespace"),
    ],
)
def test_invalid_backup_body_is_422_naming_the_field(
    env: Env, body: dict[str, object], field: str
) -> None:
    response = env.client.post(f"{BASE}/ondemandbackup", headers=AUTH, json=body)
    assert response.status_code == 422
    assert response.json()["code"] == 422
    assert response.json()["message"].startswith(f"{field}: ")
    assert env.enqueue.calls == []


def test_unknown_namespace_is_404(env: Env) -> None:
    response = env.client.post(f"{BASE}/ondemandbackup", headers=AUTH, json={"namespace": "nope"})
    assert response.status_code == 404
    assert "nope" in response.json()["message"]
    assert env.enqueue.calls == []


@pytest.mark.parametrize(
    "content", [b"{not json", b"[1, 2]", b'"x"', b"\xff\xfe", b"[" * 200_000 + b"]" * 200_000]
)
def test_malformed_json_is_422_json(env: Env, content: bytes) -> None:
    response = env.client.post(
        f"{BASE}/ondemandbackup",
        headers={**AUTH, "Content-Type": "application/json"},
        content=content,
    )
    assert response.status_code == 422
    assert response.json()["code"] == 422
    assert "request body" in response.json()["message"]
    assert env.enqueue.calls == []


def test_broker_refusal_is_503_names_broker_url_and_records_nothing(env: Env) -> None:
    """A request the broker never took is not a failed backup: no row that `latest` or
    the failure metric would show (issue 20)."""

    def refuse(task: str, kwargs: dict[str, object], queue: str) -> str:
        raise ConnectionError(f"redis://:{BROKER_PASSWORD}@127.0.0.1:1 refused")

    client = TestClient(create_app(lambda: env.fleet, refuse))
    response = client.post(f"{BASE}/ondemandbackup", headers=AUTH, json={})
    assert response.status_code == 503
    assert response.headers["retry-after"]
    message = response.json()["message"]
    assert "(BROKER_URL) did not accept the backup task" in message
    assert "nothing was queued or recorded" in message
    assert BROKER_PASSWORD not in response.text
    with session_scope(env.url) as session:
        assert session.query(Backup).count() == 0
    assert client.get(f"{BASE}/backup/latest", headers=AUTH).status_code == 404


def test_a_task_a_worker_took_although_sending_raised_is_not_called_unqueued(env: Env) -> None:
    """Celery publishes the message, then its sent event: a failure after the message went
    out must not delete a row a worker is already running, nor tell the caller that
    nothing was queued."""

    def taken_then_raise(task: str, kwargs: dict[str, object], queue: str) -> str:
        with session_scope(env.url) as session:
            row = session.query(Backup).one()
            row.status = "Running"  # what the worker does first
        raise ConnectionError("the sent event could not be published")

    client = TestClient(create_app(lambda: env.fleet, taken_then_raise))
    response = client.post(f"{BASE}/ondemandbackup", headers=AUTH, json={})
    assert response.status_code == 202, response.text
    with session_scope(env.url) as session:
        assert [row.status for row in session.query(Backup)] == ["Running"]


# --- backup status ---


def test_latest_is_404_before_any_then_the_newest(env: Env) -> None:
    response = env.client.get(f"{BASE}/backup/latest", headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"code": 404, "message": "no backup of namespace app yet"}
    accepted = env.client.post(f"{BASE}/ondemandbackup", headers=AUTH, json={})
    timestamp = accepted.json()["message"].rsplit(" ", 1)[1]
    response = env.client.get(f"{BASE}/backup/latest", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {
        "backupurl": env.store.url_for("app", timestamp),
        "namespace": "app",
        "status": "Pending",
        "timestamp": timestamp,
        "verified": None,
        "verifiedAt": None,
        "sizeAnomaly": None,
        "pitr": [],  # no `pitr` service: no recoverable window to show
    }
    assert list(response.json()) == [
        "backupurl",
        "namespace",
        "status",
        "timestamp",
        "verified",
        "verifiedAt",
        "sizeAnomaly",
        "pitr",
    ]
    other = env.client.get(f"{BASE}/backup/latest?namespace=team-b", headers=AUTH)
    assert other.status_code == 404
    bad = env.client.get(f"{BASE}/backup/latest?namespace=../x", headers=AUTH)
    assert bad.status_code == 422
    assert bad.json()["message"].startswith("namespace: must be a DNS label")


def test_backup_detail(env: Env) -> None:
    accepted = env.client.post(f"{BASE}/ondemandbackup", headers=AUTH, json={"onlyConfig": True})
    timestamp = accepted.json()["message"].rsplit(" ", 1)[1]
    started = datetime(2023, 2, 2, 17, 3, 15, tzinfo=UTC)
    with session_scope(env.url) as session:
        backup = queries.get_backup(session, namespace="app", timestamp=timestamp)
        assert backup is not None
        artifact = queries.upsert_artifact(
            session,
            backup=backup,
            service="settings",
            kind="sqlite",
            key=f"app/{timestamp}/settings.sqlite.zst",
            fmt="sqlite",
            compression="zstd",
        )
        artifact.status, artifact.size, artifact.source_size = SUCCESS, 10, 40
        artifact.sha256 = "ab" * 32
        backup.status, backup.size, backup.started_at, backup.finished_at = (
            SUCCESS,
            10,
            started,
            started,
        )
        backup.warning = "settings: post hook incus failed (exit 1): not found"
        record_hook_run(
            session,
            backup_id=backup.id,
            service="settings",
            hook="post",
            program="incus",
            ok=False,
            detail="exit 1",
            output="not found",
            started_at=started,
            finished_at=started,
        )

    response = env.client.get(f"{BASE}/backup/{timestamp}", headers=AUTH)
    assert response.status_code == 200
    detail = response.json()
    assert detail == {
        "backupurl": env.store.url_for("app", timestamp),
        "namespace": "app",
        "status": "Success",
        "timestamp": timestamp,
        "verified": None,
        "verifiedAt": None,
        "sizeAnomaly": None,
        "services": ["settings"],
        "onlyConfig": True,
        "trigger": "api",
        "error": None,
        "warning": "settings: post hook incus failed (exit 1): not found",
        "size": 10,
        "startedAt": detail["startedAt"],
        "finishedAt": detail["finishedAt"],
        "artifacts": [
            {
                "service": "settings",
                "volume": 1,
                "key": f"app/{timestamp}/settings.sqlite.zst",
                "status": "Success",
                "bytesDone": 0,
                "size": 10,
                "sourceSize": 40,
                "sha256": "ab" * 32,
                "encryption": None,
                "error": None,
                "sizeAnomaly": None,
            }
        ],
        "hooks": [
            {
                "service": "settings",
                "hook": "post",
                "attempt": 1,
                "program": "incus",
                "status": "Failed",
                "detail": "exit 1",
                "output": "not found",
                "startedAt": detail["startedAt"],
                "finishedAt": detail["startedAt"],
            }
        ],
    }
    assert datetime.fromisoformat(detail["startedAt"]) == started

    assert env.client.get(f"{BASE}/backup/2020-01-01t00-00-00", headers=AUTH).status_code == 404
    other = env.client.get(f"{BASE}/backup/{timestamp}?namespace=team-b", headers=AUTH)
    assert other.status_code == 404
    for bad in ("yesterday", "2023-02-02T17-03-15", "2023-13-02t17-03-15"):
        response = env.client.get(f"{BASE}/backup/{bad}", headers=AUTH)
        assert response.status_code == 422, bad
        assert response.json()["message"].startswith("timestamp: must be a backup timestamp")


# --- restores ---


def test_restore_of_unknown_timestamp_is_404_at_once(env: Env) -> None:
    response = env.client.post(
        f"{BASE}/ondemandrestore", headers=AUTH, json={"timestamp": "2023-02-02t17-03-15"}
    )
    assert response.status_code == 404
    assert "2023-02-02t17-03-15" in response.json()["message"]
    assert env.enqueue.calls == []
    with session_scope(env.url) as session:
        assert session.query(Restore).count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "give the backup's `timestamp`, or a `targetTime`"),
        ({"targetTime": "2023-02-02T17:03:15"}, "targetTime: must be an RFC 3339 moment"),
        ({"timestamp": "2023-02-02 17:03:15"}, "timestamp: must be"),
        ({"timestamp": "2023-02-02t17-03-15", "sourceNamespace": "A_b"}, "sourceNamespace: "),
        ({"timestamp": "2023-02-02t17-03-15", "svcs": {"git": {"off": True}}}, "svcs.git.off: "),
        ({"timestamp": "2023-02-02t17-03-15", "extra": 1}, "extra: is not a known field"),
    ],
)
def test_invalid_restore_body_is_422(env: Env, body: dict[str, object], field: str) -> None:
    response = env.client.post(f"{BASE}/ondemandrestore", headers=AUTH, json=body)
    assert response.status_code == 422
    assert response.json()["message"].startswith(field)
    assert env.enqueue.calls == []


def test_a_target_time_needs_a_pitr_service(env: Env) -> None:
    response = env.client.post(
        f"{BASE}/ondemandrestore", headers=AUTH, json={"targetTime": "2023-02-02T17:03:15Z"}
    )
    assert response.status_code == 422
    assert response.json()["message"].startswith(
        "targetTime needs a service with point-in-time recovery (`pitr = true`)"
    )
    assert env.enqueue.calls == []


def test_restore_from_the_store_respects_disabled_services(env: Env) -> None:
    timestamp = "2023-02-02t17-03-15"
    write_manifest(env.store, "app", timestamp)
    response = env.client.post(
        f"{BASE}/ondemandrestore",
        headers=AUTH,
        json={
            "timestamp": timestamp,
            "sourceNamespace": "app",
            "svcs": {
                "gitserver": {"disable": True},
                "postgres": {"disable": False},
                "settings": {},
            },
        },
    )
    assert response.status_code == 202
    # The backup restored is named (the one the fleet picks, for a targetTime).
    assert response.json() == {"code": 202, "message": "Request Accepted", "timestamp": timestamp}
    with session_scope(env.url) as session:
        restore = session.query(Restore).one()
        assert restore.namespace == "app"
        assert restore.source_namespace == "app"
        assert restore.skipped == ["gitserver"]
        assert sorted(restore.services) == ["postgres", "settings"]
        assert restore.requested_by == "ops@example.com"
        assert restore.task_id == "task-1"
        restore_id = restore.id
    assert env.enqueue.calls == [
        (
            "tasks.restore.run_restore",
            {
                "restore_id": restore_id,
                "namespace": "app",
                "source_namespace": "app",
                "timestamp": timestamp,
            },
            "restore",
        )
    ]

    again = env.client.post(f"{BASE}/ondemandrestore", headers=AUTH, json={"timestamp": timestamp})
    assert again.status_code == 409
    assert len(env.enqueue.calls) == 1


def test_an_unsigned_backup_needs_allow_unsigned_which_is_recorded(env: Env) -> None:
    env = allowing_unconfigured_sources(env)  # the backup is another cluster's
    timestamp = "2023-02-02t17-03-15"
    write_manifest(env.store, "old-cluster", timestamp, signed=False)
    body: dict[str, object] = {"timestamp": timestamp, "sourceNamespace": "old-cluster"}
    refused = env.client.post(f"{BASE}/ondemandrestore", headers=AUTH, json=body)
    assert refused.status_code == 400
    assert "cannot be authenticated" in refused.json()["message"]
    assert "allowUnsigned" in refused.json()["message"]
    not_a_bool = env.client.post(
        f"{BASE}/ondemandrestore", headers=AUTH, json={**body, "allowUnsigned": "yes"}
    )
    assert not_a_bool.status_code == 422
    assert env.enqueue.calls == []

    accepted = env.client.post(
        f"{BASE}/ondemandrestore", headers=AUTH, json={**body, "allowUnsigned": True}
    )
    assert accepted.status_code == 202
    with session_scope(env.url) as session:
        (row,) = session.query(Restore).all()
        assert row.error is not None and row.error.startswith("allowUnsigned requested by ")
        assert "not in the catalog and carries no valid MAC" in row.error


def test_restore_of_a_backup_that_is_not_successful_is_409(env: Env) -> None:
    accepted = env.client.post(f"{BASE}/ondemandbackup", headers=AUTH, json={})
    timestamp = accepted.json()["message"].rsplit(" ", 1)[1]
    write_manifest(env.store, "app", timestamp)
    response = env.client.post(
        f"{BASE}/ondemandrestore", headers=AUTH, json={"timestamp": timestamp}
    )
    assert response.status_code == 409
    assert timestamp in response.json()["message"]
    assert len(env.enqueue.calls) == 1  # only the backup


def test_a_backup_and_a_restore_of_one_namespace_exclude_each_other(env: Env) -> None:
    old = "2023-02-02t16-00-00"
    write_manifest(env.store, "app", old)
    restore = env.client.post(f"{BASE}/ondemandrestore", headers=AUTH, json={"timestamp": old})
    assert restore.status_code == 202
    backup = env.client.post(f"{BASE}/ondemandbackup", headers=AUTH, json={})
    assert backup.status_code == 409
    assert "restore of 2023-02-02t16-00-00" in backup.json()["message"]
    # Another namespace is not in the way.
    other = env.client.post(f"{BASE}/ondemandbackup", headers=AUTH, json={"namespace": "team-b"})
    assert other.status_code == 202

    with session_scope(env.url) as session:
        for row in session.query(Restore).all():
            row.status = SUCCESS
    accepted = env.client.post(f"{BASE}/ondemandbackup", headers=AUTH, json={})
    running = accepted.json()["message"].rsplit(" ", 1)[1]
    again = env.client.post(f"{BASE}/ondemandrestore", headers=AUTH, json={"timestamp": old})
    assert again.status_code == 409
    assert running in again.json()["message"]
    assert [call[0] for call in env.enqueue.calls] == [
        "tasks.restore.run_restore",
        "tasks.backup.run_backup",
        "tasks.backup.run_backup",
    ]


def allowing_unconfigured_sources(env: Env) -> Env:
    """The same fleet with BACKFLEET_ALLOW_UNCONFIGURED_SOURCE_NAMESPACES=true."""
    settings = env.fleet.settings.model_copy(
        update={"backfleet_allow_unconfigured_source_namespaces": True}
    )
    fleet = dataclasses.replace(env.fleet, settings=settings)
    client = TestClient(create_app(lambda: fleet, env.enqueue))
    return dataclasses.replace(env, client=client, fleet=fleet)


def test_restore_from_an_unconfigured_namespace_is_403_whether_or_not_it_exists(
    env: Env,
) -> None:
    timestamp = "2023-02-02t17-03-15"
    write_manifest(env.store, "old-cluster", timestamp)
    answers = [
        env.client.post(
            f"{BASE}/ondemandrestore",
            headers=AUTH,
            json={"timestamp": timestamp, "sourceNamespace": source},
        )
        for source in ("old-cluster", "no-such-place")
    ]
    assert [answer.status_code for answer in answers] == [403, 403]
    assert answers[0].json() == answers[1].json()
    assert "BACKFLEET_ALLOW_UNCONFIGURED_SOURCE_NAMESPACES" in answers[0].json()["message"]
    assert env.enqueue.calls == []
    allowed = allowing_unconfigured_sources(env)
    response = allowed.client.post(
        f"{BASE}/ondemandrestore",
        headers=AUTH,
        json={"timestamp": timestamp, "sourceNamespace": "old-cluster"},
    )
    assert response.status_code == 202


def test_restorestatus_by_query_and_by_json_body_on_get(env: Env) -> None:
    env = allowing_unconfigured_sources(env)
    timestamp = "2023-02-02t17-03-15"
    write_manifest(env.store, "old-cluster", timestamp)
    assert (
        env.client.get(f"{BASE}/restorestatus?timestamp={timestamp}", headers=AUTH).status_code
        == 404
    )
    response = env.client.post(
        f"{BASE}/ondemandrestore",
        headers=AUTH,
        json={"timestamp": timestamp, "sourceNamespace": "old-cluster"},
    )
    assert response.status_code == 202
    expected = {
        "backupurl": env.store.url_for("old-cluster", timestamp),
        "namespace": "old-cluster",  # where the backup lives
        "status": "Pending",
        "timestamp": timestamp,
        "targetTime": None,  # not a restore to a moment
    }
    by_query = env.client.get(
        f"{BASE}/restorestatus", params={"timestamp": timestamp}, headers=AUTH
    )
    assert by_query.status_code == 200
    assert by_query.json() == expected
    by_body = env.client.request(
        "GET", f"{BASE}/restorestatus", headers=AUTH, content=json.dumps({"timestamp": timestamp})
    )
    assert by_body.status_code == 200
    assert by_body.json() == expected
    # The body wins over the query string.
    both = env.client.request(
        "GET",
        f"{BASE}/restorestatus?timestamp=2020-01-01t00-00-00",
        headers=AUTH,
        json={"timestamp": timestamp},
    )
    assert both.json() == expected
    # Filtered by the target namespace.
    filtered = env.client.get(
        f"{BASE}/restorestatus",
        params={"timestamp": timestamp, "namespace": "team-b"},
        headers=AUTH,
    )
    assert filtered.status_code == 404
    into_app = env.client.request(
        "GET",
        f"{BASE}/restorestatus",
        headers=AUTH,
        json={"timestamp": timestamp, "namespace": "app"},
    )
    assert into_app.json() == expected


def test_restorestatus_needs_a_valid_timestamp(env: Env) -> None:
    missing = env.client.get(f"{BASE}/restorestatus", headers=AUTH)
    assert missing.status_code == 422
    assert missing.json()["message"] == "timestamp: is required"
    bad = env.client.get(f"{BASE}/restorestatus?timestamp=latest", headers=AUTH)
    assert bad.status_code == 422
    unknown = env.client.request(
        "GET", f"{BASE}/restorestatus", headers=AUTH, json={"timestamp": "x", "foo": 1}
    )
    assert unknown.status_code == 422
    assert "foo: is not a known field" in unknown.json()["message"]


# --- limits, errors, health, docs ---


def test_two_mib_body_is_413_and_not_enqueued(env: Env) -> None:
    body = json.dumps({"onlyConfig": True, "pad": "x" * (2 * MiB)})
    response = env.client.post(f"{BASE}/ondemandbackup", headers=AUTH, content=body)
    assert response.status_code == 413
    assert response.json()["code"] == 413
    assert "1 MiB" in response.json()["message"]
    assert env.enqueue.calls == []


def _run_middleware(
    middleware_limit: int, chunks: list[bytes], headers: list[tuple[bytes, bytes]]
) -> tuple[list[AsgiMessage], list[bytes]]:
    seen: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        seen.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    pending = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive() -> AsgiMessage:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    sent: list[AsgiMessage] = []

    async def send(message: AsgiMessage) -> None:
        sent.append(message)

    middleware = BodyLimitMiddleware(app, default_limit=middleware_limit, limits={"/big": 100})
    scope: Scope = {"type": "http", "path": "/x", "headers": headers, "method": "POST"}
    asyncio.run(middleware(scope, receive, send))
    return sent, seen


def test_body_limit_counts_streamed_bytes_whatever_the_header_says() -> None:
    chunked, seen = _run_middleware(10, [b"12345", b"67890", b"1"], [])
    assert chunked[0]["status"] == 413
    assert seen == []  # the app never ran
    lying, seen = _run_middleware(10, [b"12345", b"67890", b"1"], [(b"content-length", b"3")])
    assert lying[0]["status"] == 413
    assert seen == []
    fits, seen = _run_middleware(10, [b"12345", b"67890"], [])
    assert fits[0]["status"] == 200
    assert seen == [b"1234567890"]  # replayed whole to the app


def test_body_limit_is_per_path() -> None:
    middleware = BodyLimitMiddleware(lambda s, r, w: None, limits={"/big": 10 * MiB})  # type: ignore[arg-type,return-value]
    assert middleware.limit_for("/big") == 10 * MiB
    assert middleware.limit_for("/big/") == 10 * MiB
    assert middleware.limit_for("/other") == MiB


def test_unknown_route_and_method_are_json(env: Env) -> None:
    missing = env.client.get("/nope")
    assert missing.status_code == 404
    assert missing.json() == {"code": 404, "message": "Not Found"}
    wrong = env.client.get(f"{BASE}/ondemandbackup", headers=AUTH)
    assert wrong.status_code == 405
    assert wrong.json()["code"] == 405


def test_unexpected_error_is_a_generic_500(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"boom {KEY}")

    monkeypatch.setattr("workers.operations.jobs.request_backup", explode)
    client = TestClient(create_app(lambda: env.fleet, env.enqueue), raise_server_exceptions=False)
    response = client.post(f"{BASE}/ondemandbackup", headers=AUTH, json={})
    assert response.status_code == 500
    assert response.json() == {
        "code": 500,
        "message": "internal error; the server log has the details",
    }


def test_unconfigured_fleet_is_503_without_details(tmp_path: Path) -> None:
    def broken() -> Fleet:
        raise ConfigError(f"services file {tmp_path}/secret-place.toml does not exist")

    client = TestClient(create_app(broken, RecordingEnqueue()))
    response = client.post(f"{BASE}/ondemandbackup", headers=AUTH, json={})
    assert response.status_code == 503
    assert "secret-place" not in response.text
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "config" in ready.json()["checks"]


def test_healthz_needs_no_key(env: Env) -> None:
    response = env.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_names_the_failed_check_without_secrets(env: Env) -> None:
    response = env.client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["catalog"] == "ok"
    assert body["checks"]["store"] == "ok"
    assert body["checks"]["broker"].startswith("failed")
    assert "broker" in body["message"]
    assert BROKER_PASSWORD not in response.text


def test_readyz_when_everything_answers(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    pinged: list[str] = []
    monkeypatch.setattr(api.deps, "ping_broker", pinged.append)
    response = env.client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"catalog": "ok", "broker": "ok", "store": "ok"},
    }
    assert pinged == [env.fleet.settings.broker_url]


def test_readyz_reports_a_missing_store(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api.deps, "ping_broker", lambda url: None)
    env.store.root.rename(env.store.root.with_name("elsewhere"))
    response = env.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["store"].startswith("failed: local store directory")


def test_openapi_and_docs(env: Env) -> None:
    schema = env.client.get("/openapi.json").json()
    for path in (
        "/athena/api/v1/ondemandbackup",
        "/athena/api/v1/backup/latest",
        "/athena/api/v1/backup/{timestamp}",
        "/athena/api/v1/ondemandrestore",
        "/athena/api/v1/restorestatus",
        "/healthz",
        "/readyz",
    ):
        assert path in schema["paths"], path
    restore_body = schema["paths"]["/athena/api/v1/ondemandrestore"]["post"]["requestBody"]
    properties = restore_body["content"]["application/json"]["schema"]["properties"]
    assert {"timestamp", "sourceNamespace", "svcs", "namespace"} <= set(properties)
    assert "$ref" not in json.dumps(restore_body)
    assert env.client.get("/docs").status_code == 200


def test_importing_the_module_needs_no_environment() -> None:
    import api.main

    assert api.main.app.title == "Backfleet"

"""The API's audit trail: the middleware records every call; POST /userevents ingests events.

A real SQLite catalog and local store; the recorder's background thread is real too
(`drain` waits for it).
"""

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from api.main import create_app
from api.recorder import EventRecorder, recorder
from workers.audit.catalog import NewEvent
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import UserEvent
from workers.fleet import Fleet
from workers.repository.manifest import ArtifactEntry, Manifest, manifest_key
from workers.repository.manifest_mac import MacKey
from workers.services_config import parse_fleet_config
from workers.settings import Settings
from workers.stores.local import LocalStore

BASE = "/athena/api/v1"
KEY = "k1-secret-value"
PLAIN_KEY = "k2-plain-value"
AUTH = {"Authorization": KEY}
CONFIG = """
namespace = "app"
[namespaces.app.services.files]
kind = "directory"
path = "/data/files"
[namespaces.team-b.services.files]
kind = "directory"
path = "/data/files"
"""

SIGNING_KEY = "a-signing-key-of-at-least-32-characters"


def make_fleet(tmp_path: Path, *, enabled: bool = True) -> Fleet:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    upgrade_catalog(url)
    store = LocalStore(tmp_path / "store")
    store.init()
    settings = Settings(
        database_url=url,
        enable_user_events=enabled,
        backfleet_api_keys=SecretStr(f"{KEY}:ops@example.com:acme,{PLAIN_KEY}"),
        object_store_location_local=tmp_path / "store",
        backup_signing_key=SecretStr(SIGNING_KEY),
    )
    return Fleet(settings=settings, config=parse_fleet_config(CONFIG), store=store)


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BROKER_URL", "redis://127.0.0.1:1/0")
    yield
    recorder.drain()
    dispose_engines()


def client_for(fleet: Fleet) -> TestClient:
    return TestClient(create_app(lambda: fleet, lambda *_: "task-1"))


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return make_fleet(tmp_path)


def events(fleet: Fleet) -> list[UserEvent]:
    assert recorder.drain()
    with session_scope(fleet.settings.database_url) as session:
        return list(session.scalars(select(UserEvent).order_by(UserEvent.id)))


# --- the middleware ---


def test_each_call_is_recorded_with_its_caller_operation_and_result(fleet: Fleet) -> None:
    with client_for(fleet) as client:
        assert client.post(f"{BASE}/ondemandbackup", json={}, headers=AUTH).status_code == 202
        assert client.get(f"{BASE}/backup/latest?namespace=team-b", headers=AUTH).status_code == 404
        plain = {"Authorization": f"Bearer {PLAIN_KEY}"}
        assert client.get(f"{BASE}/restorestatus?timestamp=2023-02-02t17-03-15", headers=plain)
        assert client.get("/healthz").status_code == 200  # not an /athena call: not recorded
    backup, latest, status = events(fleet)

    assert (backup.op_type, backup.name_hints, backup.response_code) == (
        "Mutation",
        ["OnDemandBackup"],
        202,
    )
    assert (backup.user_email, backup.customer_name, backup.namespace) == (
        "ops@example.com",
        "acme",
        "app",
    )
    assert backup.request_payload == "{}"
    assert (latest.op_type, latest.name_hints, latest.response_code) == (
        "Query",
        ["LatestBackup"],
        404,
    )
    assert latest.request_params == {"namespace": "team-b"} and latest.namespace == "team-b"
    assert status.name_hints == ["RestoreStatus"] and status.user_email == ""
    assert status.request_params == {"timestamp": "2023-02-02t17-03-15"}
    for event in (backup, latest, status):
        assert 0 <= event.latency_ms < 10_000
        assert abs(event.created_at - backup.created_at) < 60_000


def test_refused_calls_are_recorded_and_no_secret_is(fleet: Fleet) -> None:
    body = {"timestamp": "2023-02-02t17-03-15", "password": "hunter2-pw", "note": KEY}
    with client_for(fleet) as client:
        assert client.post(f"{BASE}/ondemandbackup", json={}).status_code == 401
        assert client.post(f"{BASE}/ondemandrestore", json=body, headers=AUTH).status_code == 422
        assert client.get(f"{BASE}/backup/latest?token=abc123xyz", headers=AUTH)
    refused, restore, latest = events(fleet)
    assert (refused.response_code, refused.user_email) == (401, "")
    assert restore.response_code == 422 and restore.name_hints == ["OnDemandRestore"]
    payload = json.loads(restore.request_payload)
    assert payload["password"] == "***" and payload["note"] == "***"
    assert latest.request_params == {"token": "***"}
    everything = json.dumps([[e.request_payload, e.request_params] for e in events(fleet)])
    assert "hunter2" not in everything and KEY not in everything and "abc123" not in everything


def test_an_unauthenticated_call_is_one_bounded_event_in_the_default_namespace(
    fleet: Fleet,
) -> None:
    body = json.dumps({"namespace": "team-b", "pad": "x" * 60_000}).encode()
    query = "namespace=evil-ns&" + "&".join(f"p{n}={'v' * 500}" for n in range(40))
    with client_for(fleet) as client:
        for path in (f"{BASE}/ondemandbackup?{query}", f"{BASE}/userevents?namespace=team-b"):
            answer = client.post(path, content=body, headers={"Authorization": "wrong"})
            assert answer.status_code == 401
    backup, ingest = events(fleet)
    assert backup.namespace == ingest.namespace == "app"  # whatever the caller named
    assert backup.request_payload == f"({len(body)} bytes not recorded: unauthenticated)"
    assert ingest.request_payload == f"({len(body)} bytes not recorded: unauthenticated)"
    assert len(backup.request_params) <= 8
    assert all(len(v) <= 128 and len(k) <= 64 for k, v in backup.request_params.items())
    assert (backup.user_email, backup.customer_name, backup.response_code) == ("", "", 401)


def test_the_event_names_the_namespace_the_route_acted_on(fleet: Fleet) -> None:
    with client_for(fleet) as client:
        # A query naming another namespace than the body is refused, and acted on nothing.
        answer = client.post(
            f"{BASE}/ondemandbackup?namespace=team-b", json={"namespace": "app"}, headers=AUTH
        )
        assert answer.status_code == 422
        # The body names the namespace the backup is for.
        answer = client.post(f"{BASE}/ondemandbackup", json={"namespace": "team-b"}, headers=AUTH)
        assert answer.status_code == 202
        # Unknown namespaces (refused) and calls that name none go to the default namespace.
        assert (
            client.get(f"{BASE}/backup/latest?namespace=evil-ns", headers=AUTH).status_code == 404
        )
        assert (
            client.get(
                f"{BASE}/restorestatus?timestamp=2023-02-02t17-03-15&namespace=null", headers=AUTH
            ).status_code
            == 404
        )
        answer = client.get(
            f"{BASE}/restorestatus?timestamp=2023-02-02t17-03-15&namespace=team-b", headers=AUTH
        )
        assert answer.status_code == 404
    refused, backup, unknown, null, status = events(fleet)
    assert (refused.namespace, refused.response_code) == ("app", 422)
    assert (backup.namespace, backup.name_hints) == ("team-b", ["OnDemandBackup"])
    assert (unknown.namespace, null.namespace, status.namespace) == ("app", "app", "team-b")


def test_a_restore_from_another_namespace_is_recorded_in_both_trails(fleet: Fleet) -> None:
    timestamp = "2023-02-02t17-03-15"
    manifest = Manifest(
        namespace="team-b",
        timestamp=timestamp,
        started_at="2023-02-02T17:03:15Z",
        finished_at="2023-02-02T17:04:15Z",
        artifacts=[
            ArtifactEntry(
                service="files",
                key=f"team-b/{timestamp}/files.tar",
                format="tar",
                compression="none",
                size=3,
                sha256="0" * 64,
                source_size=3,
                source={"kind": "directory"},
            )
        ],
    )
    signer = MacKey.derive(SIGNING_KEY)  # found only in the store: it needs a valid MAC
    fleet.store.put_object(manifest_key("team-b", timestamp), manifest.to_bytes(signer))
    body = {"timestamp": timestamp, "sourceNamespace": "team-b"}
    with client_for(fleet) as client:
        answer = client.post(f"{BASE}/ondemandrestore", json=body, headers=AUTH)
        assert answer.status_code == 202
    into, source = events(fleet)
    assert (into.namespace, source.namespace) == ("app", "team-b")
    assert into.name_hints == source.name_hints == ["OnDemandRestore"]
    assert into.request_payload == source.request_payload


def test_no_body_shape_skips_the_record(fleet: Fleet) -> None:
    deep = b'{"a":' * 3000 + b"1" + b"}" * 3000
    nested: dict[str, Any] = {"password": "hunter2-pw", "v": 1}
    for _ in range(100):
        nested = {"x": nested, "token": "abc123xyz"}
    wide = {"items": [{"secret": "s3cr3t-value", "n": n} for n in range(5000)]}
    with client_for(fleet) as client:
        for body in (deep, json.dumps(nested).encode(), json.dumps(wide).encode(), b"[" * 50_000):
            answer = client.request("GET", f"{BASE}/backup/latest", content=body, headers=AUTH)
            assert answer.status_code == 404
    recorded = events(fleet)
    assert len(recorded) == 4  # every call is in the trail, whatever its body
    assert recorded[0].request_payload == f"({len(deep)} bytes not recorded: nested too deeply)"
    assert '"[nested too deeply]"' in recorded[1].request_payload
    everything = json.dumps([e.request_payload for e in recorded])
    assert "hunter2" not in everything and "abc123" not in everything
    assert "s3cr3t" not in everything


def test_nothing_is_recorded_when_user_events_are_off(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, enabled=False)
    with client_for(fleet) as client:
        assert client.post(f"{BASE}/ondemandbackup", json={}, headers=AUTH).status_code == 202
        answer = client.post(f"{BASE}/userevents", json=[], headers=AUTH)
    assert answer.status_code == 404 and "ENABLE_USER_EVENTS" in answer.json()["message"]
    assert events(fleet) == []


def test_a_failure_to_record_never_fails_the_request(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("the recorder is broken")

    monkeypatch.setattr(recorder, "submit", broken)
    with client_for(fleet) as client:
        assert client.post(f"{BASE}/ondemandbackup", json={}, headers=AUTH).status_code == 202


def test_the_recorder_survives_an_unreachable_catalog(tmp_path: Path) -> None:
    from tests.audit_events import make_events

    own = EventRecorder(max_queued=10)
    bad_url = f"sqlite:///{tmp_path}/missing-dir/not-a-dir.db/x.db"
    (tmp_path / "missing-dir").mkdir()
    (tmp_path / "missing-dir" / "not-a-dir.db").write_text("a file where a directory should be")
    for event in make_events(30):
        own.submit(bad_url, event)  # never raises, never blocks: a full queue drops
    assert own.drain(timeout=10)
    assert own.written == 0 and own.dropped == 30


def test_a_flood_of_unauthenticated_events_cannot_crowd_out_the_real_trail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.audit_events import make_events

    slow_catalog = threading.Event()
    written: list[NewEvent] = []

    def store_slowly(url: str, events: list[NewEvent]) -> int:
        slow_catalog.wait(timeout=30)  # the catalog is slow until the flood is over
        written.extend(events)
        return len(events)

    monkeypatch.setattr("api.recorder.store_events", store_slowly)
    own = EventRecorder(max_queued=100, unauthenticated_budget=5)
    flood, real = make_events(50, tag="flood"), make_events(20, tag="real")
    for event in flood:
        own.submit("sqlite://", event, unauthenticated=True)
    for event in real:
        own.submit("sqlite://", event)
    slow_catalog.set()
    assert own.drain(timeout=10)
    assert own.dropped == 45 and len(written) == 25
    assert [e for e in written if e in real] == real  # every real event kept, in order


# --- POST /userevents ---


def line(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "opType": "Mutation",
        "createdAt": 1_700_000_000_000 + n,
        "nameHints": ["CreateProject"],
        "userEmail": "alice@example.com",
        "customerName": "acme",
        "responseCode": 200,
        "requestParams": {"project": f"p{n}"},
        "requestPayload": "{}",
        "latencyInMillis": 12,
        **extra,
    }


def ingested(fleet: Fleet) -> list[UserEvent]:
    return [e for e in events(fleet) if e.name_hints != ["UserEvents"]]


def test_a_json_array_is_accepted(fleet: Fleet) -> None:
    with client_for(fleet) as client:
        answer = client.post(f"{BASE}/userevents", json=[line(1), line(2)], headers=AUTH)
    assert answer.status_code == 202 and answer.json() == {"accepted": 2}
    stored = ingested(fleet)
    assert [e.request_params for e in stored] == [{"project": "p1"}, {"project": "p2"}]
    assert stored[0].user_email == "alice@example.com" and stored[0].latency_ms == 12
    (call,) = [e for e in events(fleet) if e.name_hints == ["UserEvents"]]
    assert "bytes of events" in call.request_payload  # the call itself, without the events


def test_json_lines_are_accepted_and_the_owner_fills_a_missing_user(fleet: Fleet) -> None:
    minimal = {"opType": "Query", "createdAt": 1_700_000_000_000}
    body = "\n".join(json.dumps(item) for item in (line(1), minimal)) + "\n\n"
    headers = {**AUTH, "Content-Type": "application/x-ndjson"}
    with client_for(fleet) as client:
        answer = client.post(f"{BASE}/userevents?namespace=team-b", content=body, headers=headers)
    assert answer.json() == {"accepted": 2}
    first, second = ingested(fleet)
    assert first.user_email == "alice@example.com" and first.namespace == "team-b"
    assert (second.user_email, second.customer_name) == ("ops@example.com", "acme")
    assert second.name_hints == [] and second.response_code == 200


def test_bad_lines_are_named_and_nothing_is_stored(fleet: Fleet) -> None:
    body = "\n".join(
        [
            json.dumps(line(1)),
            json.dumps(line(2, createdAt="yesterday")),
            "{not json",
            json.dumps(line(4)),
            json.dumps(line(5, surprise=1)),
        ]
    )
    headers = {**AUTH, "Content-Type": "application/x-ndjson"}
    with client_for(fleet) as client:
        answer = client.post(f"{BASE}/userevents", content=body, headers=headers)
        assert answer.status_code == 422
        assert (
            answer.json()["message"]
            == "1 invalid event line(s), nothing stored: line 3: not valid JSON"
        )
        del_bad_json = "\n".join(body.split("\n")[:2] + body.split("\n")[3:])
        answer = client.post(f"{BASE}/userevents", content=del_bad_json, headers=headers)
        message = answer.json()["message"]
        assert answer.status_code == 422
        assert "line 2: createdAt:" in message and "line 4: surprise: is not a known key" in message
        assert "yesterday" not in message
        array = client.post(f"{BASE}/userevents", json=[line(1), 7], headers=AUTH)
        assert "line 2: must be a JSON object" in array.json()["message"]
    assert ingested(fleet) == []


def test_limits_10000_events_and_10_mib(fleet: Fleet) -> None:
    with client_for(fleet) as client:
        many = [{"opType": "Q", "createdAt": n} for n in range(10_001)]
        answer = client.post(f"{BASE}/userevents", json=many, headers=AUTH)
        assert answer.status_code == 413 and "10000" in answer.json()["message"]
        huge = [line(1, requestPayload="x" * (11 * 1024 * 1024))]
        answer = client.post(f"{BASE}/userevents", json=huge, headers=AUTH)
        assert answer.status_code == 413 and "10 MiB" in answer.json()["message"]
        big_but_fine = [line(n, requestPayload="y" * 700) for n in range(10_000)]
        answer = client.post(f"{BASE}/userevents", json=big_but_fine, headers=AUTH)
        assert answer.json() == {"accepted": 10_000}
    assert len(ingested(fleet)) == 10_000

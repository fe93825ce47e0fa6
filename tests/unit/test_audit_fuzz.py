"""Unauthenticated fuzzing writes nothing but one failure event per request.

Schemathesis sends generated requests without a key to every /athena
operation, on a real SQLite catalog and local store with the audit trail on.
Afterwards the catalog's user_events, the store (after a flush) and /metrics
hold nothing new but those events: one per request, in the default namespace,
payload reduced to its size.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from sqlalchemy import select

from api.main import create_app
from api.recorder import recorder
from tests.unit.test_user_events_api import make_fleet
from workers.audit.jobs import flush_from_settings
from workers.audit.layout import AUDIT_DIR
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import UserEvent
from workers.fleet import Fleet

pytestmark = pytest.mark.timeout(300)
EXAMPLES = 25  # per operation: bounded, so the test ends by itself


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("BROKER_URL", "redis://127.0.0.1:1/0")  # refused at once
    yield make_fleet(tmp_path)
    recorder.drain()
    dispose_engines()


def stored_keys(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def namespace_labels(metrics_text: str) -> set[str]:
    return {
        part.split('"')[1]
        for line in metrics_text.splitlines()
        if not line.startswith("#")
        for part in line.split(",")
        if 'namespace="' in part
    }


def fuzz_without_a_key(operation: Any, sent: list[int]) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def fuzz(case: Any) -> None:
        sent.append(case.call(headers={"Authorization": "Bearer not-a-key"}).status_code)

    fuzz()


def test_unauthenticated_fuzzing_writes_only_one_failure_event_per_request(fleet: Fleet) -> None:
    app = create_app(lambda: fleet, lambda *_: "task-1")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    root = fleet.settings.object_store_location_local
    before_store = stored_keys(root)
    with TestClient(app) as client:
        before_metrics = client.get("/metrics").text
    sent: list[int] = []

    results: list[Any] = list(schema.get_all_operations())
    operations = [result.ok() for result in results]  # an invalid operation raises here
    athena = [op for op in operations if op.path.startswith("/athena/")]
    assert len(athena) >= 6
    for operation in athena:
        fuzz_without_a_key(operation, sent)

    assert recorder.drain()
    assert set(sent) == {401}
    with session_scope(fleet.settings.database_url) as session:
        recorded = list(session.scalars(select(UserEvent)))
    assert len(recorded) == len(sent)  # one event per request, no more
    for event in recorded:
        assert (event.namespace, event.response_code, event.user_email) == ("app", 401, "")
        assert event.request_payload.endswith(" bytes not recorded: unauthenticated)")
        assert len(event.request_params) <= 8

    flush_from_settings(fleet)
    new_keys = stored_keys(root) - before_store
    assert new_keys and all(key.startswith(f"app/{AUDIT_DIR}/") for key in new_keys)
    with TestClient(app) as client:
        after_metrics = client.get("/metrics").text
    assert namespace_labels(after_metrics) <= namespace_labels(before_metrics) | {"app", "team-b"}

"""Scoped API keys on every /athena route: two tenants, two keys, and keys lacking one role.

The routes come from the app's OpenAPI document (tests/scoped_api.py builds a
request for each), so a new /athena route is checked without being listed: if
it forgets its role in api.scopes.ROLE_OF it is refused to every key, and the
in-scope case below fails.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient

from api.main import create_app
from api.recorder import recorder
from api.scopes import NO_ROLE_DECLARED, ROLE_OF, authorize
from tests.scoped_api import (
    BASE,
    KEY_OF,
    TENANTS,
    TS,
    UNCONFIGURED,
    WITHOUT_ROLE,
    Call,
    athena_calls,
    make_fleet,
    seed,
)
from workers.api_keys import ApiKey, match_api_key
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import Restore, UserEvent
from workers.fleet import Fleet

OTHER = {"app": "team-b", "team-b": "app"}


class Recording:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, object], str]] = []

    def __call__(self, task: str, kwargs: dict[str, object], queue: str) -> str:
        self.calls.append((task, kwargs, queue))
        return f"task-{len(self.calls)}"


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BROKER_URL", "redis://127.0.0.1:1/0")
    yield
    recorder.drain()
    dispose_engines()


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    fleet = make_fleet(f"sqlite:///{tmp_path / 'catalog.db'}", tmp_path / "store")
    seed(fleet)
    return fleet


@pytest.fixture
def enqueue() -> Recording:
    return Recording()


@pytest.fixture
def client(fleet: Fleet, enqueue: Recording) -> TestClient:
    return TestClient(create_app(lambda: fleet, enqueue))


def calls() -> list[Call]:
    return athena_calls(create_app(lambda: None, Recording()))  # type: ignore[arg-type,return-value]


def assert_refused(response_json: dict[str, object], *hidden: str) -> None:
    assert response_json["code"] == 403
    message = str(response_json["message"])
    for word in (*hidden, "configured", "exist", "not found"):
        assert word not in message


def test_every_athena_route_declares_its_role() -> None:
    routes = {(call.method, call.path) for call in calls()}
    missing = sorted(f"{m} {p}" for m, p in routes - set(ROLE_OF))
    assert not missing, f"add these routes to api.scopes.ROLE_OF: {missing}"
    assert set(ROLE_OF) <= routes, "api.scopes.ROLE_OF names a route that no longer exists"


def test_a_route_that_forgets_its_role_is_refused_to_every_key(fleet: Fleet) -> None:
    app = create_app(lambda: fleet, Recording())
    forgetful = APIRouter(prefix=BASE, dependencies=[Depends(authorize)])

    @forgetful.get("/forgotten")
    def forgotten() -> dict[str, str]:
        return {"reached": "yes"}

    app.include_router(forgetful)
    client = TestClient(app)
    for key in (*KEY_OF.values(), *WITHOUT_ROLE.values()):
        response = client.get(f"{BASE}/forgotten", headers={"Authorization": key})
        assert response.status_code == 403
        assert response.json() == {"code": 403, "message": NO_ROLE_DECLARED}


@pytest.mark.parametrize("call", calls(), ids=str)
@pytest.mark.parametrize("tenant", TENANTS)
def test_a_tenant_key_acts_in_its_namespace_only(
    client: TestClient, enqueue: Recording, call: Call, tenant: str
) -> None:
    key = KEY_OF[tenant]
    inside = client.request(**call.request(tenant, key=key))
    assert inside.status_code not in (401, 403), (call, inside.text)
    assert inside.status_code < 500, (call, inside.text)
    enqueued = len(enqueue.calls)

    for elsewhere in (OTHER[tenant], UNCONFIGURED, "no-such-namespace"):
        outside = client.request(**call.request(elsewhere, key=key))
        assert outside.status_code == 403, (call, elsewhere, outside.text)
        assert_refused(outside.json(), elsewhere, OTHER[tenant])
    assert len(enqueue.calls) == enqueued  # nothing was queued for a refused call


@pytest.mark.parametrize("call", calls(), ids=str)
def test_a_key_without_the_routes_role_is_refused(client: TestClient, call: Call) -> None:
    assert call.role is not None, f"{call} has no role in api.scopes.ROLE_OF"
    for role, key in WITHOUT_ROLE.items():
        for namespace in TENANTS:
            response = client.request(**call.request(namespace, key=key))
            if role == call.role:
                assert response.status_code == 403, (call, role, response.text)
                assert f"`{role}` role" in response.json()["message"]
            else:
                assert response.status_code not in (401, 403), (call, role, response.text)


def test_an_unscoped_key_reaches_every_namespace(tmp_path: Path, enqueue: Recording) -> None:
    # `key` and `key:owner:customer` keep meaning every namespace and every role.
    fleet = make_fleet(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "store")
    seed(fleet)
    settings = fleet.settings.model_copy(
        update={"backfleet_api_keys": type(fleet.settings.backfleet_api_keys)("k1,k2:o@x.io:c")}
    )
    client = TestClient(create_app(lambda: Fleet(settings, fleet.config, fleet.store), enqueue))
    for key in ("k1", "k2"):
        for call in calls():
            for namespace in TENANTS:
                response = client.request(**call.request(namespace, key=key))
                assert response.status_code not in (401, 403), (key, call, response.text)


def test_restore_from_another_namespace_needs_both(
    client: TestClient, fleet: Fleet, enqueue: Recording
) -> None:
    # The app tenant's key asks to restore team-b's backup into app: refused.
    body = {"timestamp": TS, "namespace": "app", "sourceNamespace": "team-b"}
    refused = client.post(
        f"{BASE}/ondemandrestore", json=body, headers={"Authorization": KEY_OF["app"]}
    )
    assert refused.status_code == 403
    assert_refused(refused.json(), "team-b")
    # An unconfigured source that holds a backup answers exactly as one that holds nothing.
    for source in (UNCONFIGURED, "nothing-here"):
        answer = client.post(
            f"{BASE}/ondemandrestore",
            json={**body, "sourceNamespace": source},
            headers={"Authorization": KEY_OF["app"]},
        )
        assert answer.json() == refused.json()
    assert enqueue.calls == []
    # A key holding both namespaces may.
    both = WITHOUT_ROLE["ingest"]
    accepted = client.post(f"{BASE}/ondemandrestore", json=body, headers={"Authorization": both})
    assert accepted.status_code == 202, accepted.text
    assert [kwargs["source_namespace"] for _, kwargs, _ in enqueue.calls] == ["team-b"]


def test_unconfigured_source_needs_the_setting_even_for_a_key_of_every_namespace(
    tmp_path: Path, enqueue: Recording
) -> None:
    body = {"timestamp": TS, "namespace": "app", "sourceNamespace": UNCONFIGURED}
    key = {"Authorization": WITHOUT_ROLE["ingest"]}
    for allowed, expected in ((False, 403), (True, 202)):
        fleet = make_fleet(
            f"sqlite:///{tmp_path / f'{allowed}.db'}",
            tmp_path / f"store-{allowed}",
            backfleet_allow_unconfigured_source_namespaces=allowed,
        )
        seed(fleet)
        client = TestClient(create_app(lambda fleet=fleet: fleet, enqueue))  # type: ignore[misc]
        response = client.post(f"{BASE}/ondemandrestore", json=body, headers=key)
        assert response.status_code == expected, response.text
    assert len(enqueue.calls) == 1


def test_restorestatus_shows_a_scoped_key_only_restores_it_holds_both_ends_of(
    client: TestClient, fleet: Fleet
) -> None:
    both = {"Authorization": WITHOUT_ROLE["ingest"]}
    body = {"timestamp": TS, "namespace": "app", "sourceNamespace": "team-b"}
    assert client.post(f"{BASE}/ondemandrestore", json=body, headers=both).status_code == 202
    for key, expected in ((KEY_OF["app"], 404), (KEY_OF["team-b"], 404), (both, 200)):
        headers = key if isinstance(key, dict) else {"Authorization": key}
        response = client.get(f"{BASE}/restorestatus", params={"timestamp": TS}, headers=headers)
        assert response.status_code == expected, (key, response.text)
    assert (
        "team-b"
        not in client.get(
            f"{BASE}/restorestatus",
            params={"timestamp": TS},
            headers={"Authorization": KEY_OF["app"]},
        ).text
    )
    with session_scope(fleet.settings.database_url) as session:
        assert session.query(Restore).count() == 1


def test_a_refused_call_enqueues_and_records_nothing(
    client: TestClient, fleet: Fleet, enqueue: Recording
) -> None:
    key = {"Authorization": KEY_OF["team-b"]}
    assert client.post(f"{BASE}/ondemandbackup", json={}, headers=key).status_code == 403
    restore = {"timestamp": TS}
    assert client.post(f"{BASE}/ondemandrestore", json=restore, headers=key).status_code == 403
    assert enqueue.calls == []
    with session_scope(fleet.settings.database_url) as session:
        assert session.query(Restore).count() == 0


def test_a_key_shows_its_scope_but_never_the_key_or_its_digest() -> None:
    keys = [ApiKey("secret-one", "a@x.io", "acme", namespaces=frozenset({"app"}))]
    found = match_api_key("Bearer secret-one", keys)
    assert found is keys[0]
    assert "secret-one" not in repr(found)
    assert found.digest.hex() not in repr(found)
    assert repr(found) == (
        "ApiKey(owner_email='a@x.io', customer='acme', namespaces='app', "
        "roles='read+backup+restore+ingest')"
    )


def test_a_post_refuses_a_query_namespace_its_body_does_not_repeat(
    client: TestClient, enqueue: Recording
) -> None:
    # A POST takes its namespace from the body: `?namespace=team-b` alone used to act,
    # silently, on the default namespace (a restore overwriting the wrong one).
    key = {"Authorization": WITHOUT_ROLE["ingest"]}  # every namespace
    for path, body in (("ondemandbackup", {}), ("ondemandrestore", {"timestamp": TS})):
        for sent in (body, {**body, "namespace": "app"}):
            response = client.post(
                f"{BASE}/{path}", params={"namespace": "team-b"}, json=sent, headers=key
            )
            assert response.status_code == 422, (path, sent, response.text)
            assert "namespace" in response.json()["message"]
    assert enqueue.calls == []
    agreeing = client.post(
        f"{BASE}/ondemandbackup",
        params={"namespace": "team-b"},
        json={"namespace": "team-b"},
        headers=key,
    )
    assert agreeing.status_code == 202, agreeing.text
    assert [kwargs["namespace"] for _, kwargs, _ in enqueue.calls] == ["team-b"]


def test_a_refused_restorestatus_is_recorded_in_the_default_namespace_only(
    client: TestClient, fleet: Fleet
) -> None:
    # The app tenant's key asks about team-b: refused, and nothing lands in team-b's trail.
    response = client.get(
        f"{BASE}/restorestatus",
        params={"timestamp": TS, "namespace": "team-b"},
        headers={"Authorization": KEY_OF["app"]},
    )
    assert response.status_code == 403
    recorder.drain()
    with session_scope(fleet.settings.database_url) as session:
        rows = session.query(UserEvent).all()
        assert [(row.namespace, row.response_code) for row in rows] == [("app", 403)]

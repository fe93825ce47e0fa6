"""`GET /athena/api/v1/backups` against a real SQLite catalog: its fields (the detail's
names), its filters, its pages, its scope and its 422s; and a page costs the same few
queries whatever its size.

(tests/integration/test_catalog_listing.py runs the query on PostgreSQL too.)
"""

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

from api.main import create_app
from api.scopes import OUT_OF_SCOPE
from tests.catalog_seed import SCRIPT_ERROR, Seeded, add_backup, seed_catalog
from tests.unit.test_api import RecordingEnqueue, make_fleet
from workers.catalog.db import dispose_engines
from workers.catalog.models import SUCCESS
from workers.fleet import Fleet

URL = "/athena/api/v1/backups"
KEY = "list-every-namespace-3b9c"
APP_KEY = "list-app-only-61d2"
TEAM_B_KEY = "list-team-b-only-0e7a"
NO_READ_KEY = "list-no-read-5c40"
KEYS = ",".join(
    [
        f"{KEY}:ops@example.com:acme",
        f"{APP_KEY}:dev@example.com:acme:app:read",
        f"{TEAM_B_KEY}:b@example.com:bcorp:team-b:read",
        f"{NO_READ_KEY}:ci@example.com:acme:*:backup+restore",
    ]
)
MiB = 2**20


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BROKER_URL", "redis://127.0.0.1:1/0")
    yield
    dispose_engines()


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return make_fleet(tmp_path, KEYS)


@pytest.fixture
def client(fleet: Fleet) -> TestClient:
    return TestClient(create_app(lambda: fleet, RecordingEnqueue()))


@pytest.fixture
def seeded(fleet: Fleet) -> Seeded:
    return seed_catalog(fleet.settings.database_url)


def listing(client: TestClient, key: str = KEY, **params: Any) -> dict[str, Any]:
    response = client.get(URL, params=params, headers={"Authorization": key})
    assert response.status_code == 200, response.text
    return dict(response.json())


def stamps(answer: dict[str, Any]) -> list[tuple[str, str]]:
    return [(item["namespace"], item["timestamp"]) for item in answer["backups"]]


# --- what a backup says ---


def test_every_backup_newest_first_with_its_sizes_and_times(
    client: TestClient, seeded: Seeded
) -> None:
    answer = listing(client)
    assert answer["next"] is None
    listed = stamps(answer)
    assert listed == sorted(listed, key=lambda pair: pair[1], reverse=True)
    assert {("app", seeded.good), ("app", seeded.failed), ("team-b", seeded.team_b)} < set(listed)
    assert listed[0] == ("app", seeded.running)
    by_stamp = {(item["namespace"], item["timestamp"]): item for item in answer["backups"]}

    good = by_stamp[("app", seeded.good)]
    assert good["status"] == SUCCESS and good["trigger"] == "schedule"
    assert good["services"] == ["gitserver", "postgres", "settings"]
    assert good["size"] == good["storedSize"] == 12 * MiB + 120 * MiB + 2**16
    assert good["sourceSize"] == 80 * MiB + 180 * MiB + 2**18
    assert good["durationSeconds"] == 81.5
    assert good["verified"] == SUCCESS and good["verifiedAt"].endswith("07:00:00Z")
    assert good["sizeAnomaly"].startswith("postgres: 80.0 MiB")
    assert good["warning"] == "post hook of gitserver: exit 1"
    assert good["onlyConfig"] is False and good["error"] is None
    assert good["backupurl"].startswith("file://") and good["backupurl"].endswith(
        f"/app/{seeded.good}/"
    )

    failed = by_stamp[("app", seeded.failed)]
    assert failed["error"] == SCRIPT_ERROR and failed["durationSeconds"] == 3.0
    assert failed["size"] is None and failed["storedSize"] == 0  # what its artifacts stored
    running = by_stamp[("app", seeded.running)]
    assert running["services"] == ["gitserver", "postgres", "settings"]
    assert running["storedSize"] is None and running["durationSeconds"] is None
    assert running["startedAt"] is not None and running["finishedAt"] is None


def test_a_backup_keeps_the_names_and_values_of_its_detail(
    client: TestClient, seeded: Seeded
) -> None:
    """The same field is never named twice, nor the same name given another meaning."""
    auth = {"Authorization": KEY}
    for item in listing(client)["backups"]:
        detail = client.get(
            f"/athena/api/v1/backup/{item['timestamp']}",
            params={"namespace": item["namespace"]},
            headers=auth,
        ).json()
        shared = set(detail) - {"artifacts", "hooks"}
        assert shared <= set(item), shared - set(item)
        assert {name: item[name] for name in shared} == {name: detail[name] for name in shared}
        latest_fields = client.get(
            "/athena/api/v1/backup/latest", params={"namespace": item["namespace"]}, headers=auth
        ).json()
        # `pitr` is the namespace's recoverable windows (issue 21), not a field of a backup.
        assert set(latest_fields) - {"pitr"} <= set(item)


# --- filters ---


def test_filters(client: TestClient, seeded: Seeded) -> None:
    app_all = [("app", s) for s in (seeded.running, seeded.failed, seeded.good)]
    # A Running backup with no artifact yet holds the service all the same (its `services`).
    git = stamps(listing(client, service="gitserver"))
    assert git[:2] == [app_all[0], app_all[2]] and len(git) == 3
    assert stamps(listing(client, service="files")) == [("team-b", seeded.team_b)]
    assert stamps(listing(client, service="nothing-of-that-name")) == []
    assert stamps(listing(client, status="Failed")) == [("app", seeded.failed)]
    assert stamps(listing(client, namespace="team-b")) == [("team-b", seeded.team_b)]
    # since and until are both included.
    window = listing(client, since=seeded.good, until=seeded.failed)
    assert stamps(window) == [("app", seeded.failed), ("app", seeded.good)]
    assert stamps(listing(client, since=seeded.running)) == [("app", seeded.running)]
    combined = listing(client, namespace="app", service="postgres", status="Success")
    assert stamps(combined)[0] == ("app", seeded.good)
    assert all(item["status"] == SUCCESS for item in combined["backups"])


# --- pages ---


def many_backups(url: str, count: int, start: datetime) -> None:
    """`count` backups in each tenant, the same timestamps in both: pages must break ties."""
    for n in range(count):
        for namespace in ("app", "team-b"):
            add_backup(
                url,
                namespace=namespace,
                moment=start + timedelta(minutes=n),
                status=SUCCESS,
                sizes={"files" if namespace == "team-b" else "postgres": (n, 2 * n)},
                seconds=1,
            )


def walk(client: TestClient, limit: int, key: str = KEY, **params: Any) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    cursor: str | None = None
    while True:
        page = listing(client, key, limit=limit, **params, **({"cursor": cursor} if cursor else {}))
        assert len(page["backups"]) <= limit
        seen += stamps(page)
        cursor = page["next"]
        if cursor is None:
            return seen


def test_pages_cover_every_backup_once_in_order(client: TestClient, fleet: Fleet) -> None:
    many_backups(fleet.settings.database_url, 7, datetime(2023, 2, 2, tzinfo=UTC))
    everything = stamps(listing(client, limit=500))
    assert len(everything) == 14 and listing(client, limit=500)["next"] is None
    for limit in (1, 2, 3, 13, 14):
        assert walk(client, limit) == everything, limit
    assert walk(client, 2, namespace="app") == [pair for pair in everything if pair[0] == "app"]
    exact = listing(client, limit=14)
    assert exact["next"] is None  # no empty last page when the count divides evenly


def test_a_backup_taken_meanwhile_does_not_shift_the_next_page(
    client: TestClient, fleet: Fleet
) -> None:
    url = fleet.settings.database_url
    many_backups(url, 3, datetime(2023, 2, 2, tzinfo=UTC))
    everything = stamps(listing(client))
    first = listing(client, limit=2)
    add_backup(  # newer than all of them
        url, namespace="app", moment=datetime(2024, 1, 1, tzinfo=UTC), status=SUCCESS, sizes={}
    )
    rest = listing(client, limit=500, cursor=first["next"])
    assert stamps(first) + stamps(rest) == everything


def test_the_default_page_is_50_and_at_most_500(client: TestClient, fleet: Fleet) -> None:
    many_backups(fleet.settings.database_url, 30, datetime(2023, 2, 2, tzinfo=UTC))
    default = listing(client)
    assert len(default["backups"]) == 50 and default["next"] is not None
    assert len(listing(client, limit=500)["backups"]) == 60


# --- scope ---


def test_a_scoped_key_never_sees_another_namespace(client: TestClient, seeded: Seeded) -> None:
    for key, own, other in ((APP_KEY, "app", "team-b"), (TEAM_B_KEY, "team-b", "app")):
        answer = listing(client, key)
        assert answer["backups"] and {ns for ns, _ in stamps(answer)} == {own}
        # Not through a filter either: team-b's service, or a window holding its backup.
        assert stamps(listing(client, key, service="files" if own == "app" else "postgres")) == []
        assert {ns for ns, _ in walk(client, 1, key, since=seeded.team_b)} == {own}
        for asked in (other, "old-cluster", "no-such-namespace"):
            refused = client.get(URL, params={"namespace": asked}, headers={"Authorization": key})
            assert refused.status_code == 403
            assert refused.json() == {"code": 403, "message": OUT_OF_SCOPE}


def test_an_unconfigured_namespace_is_404_to_a_key_of_every_namespace(
    client: TestClient, seeded: Seeded
) -> None:
    answer = client.get(URL, params={"namespace": "old-cluster"}, headers={"Authorization": KEY})
    assert answer.status_code == 404
    assert "old-cluster is not configured" in answer.json()["message"]


def test_a_key_without_the_read_role_is_refused(client: TestClient, seeded: Seeded) -> None:
    refused = client.get(URL, headers={"Authorization": NO_READ_KEY})
    assert refused.status_code == 403 and "`read` role" in refused.json()["message"]
    assert client.get(URL).status_code == 401


# --- 422s ---


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "Done"}, "status"),
        ({"status": "success"}, "status"),
        ({"since": "2023-02-02"}, "since"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2023-13-01t00-00-00"}, "until"),
        ({"until": "2023-02-02T17:03:15Z"}, "until"),
        ({"since": "2023-02-03t00-00-00", "until": "2023-02-02t00-00-00"}, "until"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not a cursor"}, "cursor"),
        ({"cursor": _b64("2023-02-02t17-03-15")}, "cursor"),
        ({"cursor": _b64("yesterday/1")}, "cursor"),
        ({"cursor": _b64("2023-02-02t17-03-15/-1")}, "cursor"),
        ({"cursor": _b64("2023-02-02t17-03-15/\u00b2")}, "cursor"),  # "²": a digit to isdigit
        ({"cursor": "x" * 201}, "cursor"),
        ({"namespace": "Team_B"}, "namespace"),
        ({"service": "Postgres"}, "service"),
    ],
)
def test_a_bad_parameter_is_a_422_naming_it(
    client: TestClient, params: dict[str, str], field: str
) -> None:
    answer = client.get(URL, params=params, headers={"Authorization": KEY})
    assert answer.status_code == 422, answer.text
    assert answer.json()["message"].startswith(f"{field}: "), answer.json()


# --- cost ---


def statements_of(client: TestClient, **params: Any) -> int:
    count = 0

    def counted(*_: object) -> None:
        nonlocal count
        count += 1

    event.listen(Engine, "before_cursor_execute", counted)
    try:
        listing(client, **params)
    finally:
        event.remove(Engine, "before_cursor_execute", counted)
    return count


def test_a_page_costs_the_same_queries_whatever_its_size(client: TestClient, fleet: Fleet) -> None:
    many_backups(fleet.settings.database_url, 3, datetime(2023, 2, 2, tzinfo=UTC))
    small = statements_of(client, limit=2)
    many_backups(fleet.settings.database_url, 60, datetime(2023, 3, 2, tzinfo=UTC))
    large = statements_of(client, limit=100)
    assert small == large <= 2  # the page, and its artifacts' sizes in one aggregate

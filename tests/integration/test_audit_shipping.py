"""Shipping user events to every store: exactly once, grouped by date, bounded objects.

Catalog on a real PostgreSQL (and SQLite for the store-independent checks);
stores: local, S3 (`rclone serve s3`) and Azure Blob (Azurite).
"""

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from tests.audit_events import (
    DAY_MS,
    T0,
    insert,
    make_events,
    once_each,
    shipped,
    shipped_counts,
)
from tests.plugins.object_stores import AzuriteServer, S3Server
from workers.audit import catalog, rows
from workers.audit.export import export_events
from workers.audit.layout import day_of
from workers.audit.ship import ShipLimits, flush_user_events
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.errors import TransientError
from workers.stores.azure_blob import AzureBlobStore
from workers.stores.base import ObjectStore
from workers.stores.local import LocalStore
from workers.stores.s3 import S3Store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
KEY = re.compile(r"^app/user-events-audit/(\d{4})/(\d{2})/(\d{2})/(\d{15})-(\d{15})\.jsonl\.gz$")


@pytest.fixture(params=["local", "s3", "azure"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        return S3Store.from_settings(server.make_settings(request.getfixturevalue("s3_bucket")))
    if request.param == "azure":
        azurite: AzuriteServer = request.getfixturevalue("azurite_server")
        container = request.getfixturevalue("azure_container")
        return AzureBlobStore.from_settings(azurite.make_settings(container))
    local = LocalStore(tmp_path / "store")
    local.init()
    return local


@pytest.fixture(params=["postgresql", "sqlite"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url = (
        request.getfixturevalue("pg_database")
        if request.param == "postgresql"
        else f"sqlite:///{tmp_path}/catalog.db"
    )
    upgrade_catalog(url)
    yield url
    dispose_engines()


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    upgrade_catalog(pg_database)
    yield pg_database
    dispose_engines()


def unshipped(url: str) -> int:
    with session_scope(url) as session:
        return catalog.unshipped_event_count(session)


def test_every_event_ships_exactly_once_grouped_by_date(
    store: ObjectStore, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3 days of events, 2 namespaces, and a file bound that cuts each day in several objects;
    # rows read back in many small COPYs.
    monkeypatch.setattr(rows, "IDS_PER_COPY", 37)
    events = make_events(900, step_ms=DAY_MS // 300)
    insert(pg_url, events + make_events(10, namespace="other"))
    limits = ShipLimits(batch_events=400, file_bytes=16 * 1024)

    result = flush_user_events(store=store, database_url=pg_url, limits=limits)

    assert result.events == 910 and result.batches == 3 + 1
    assert unshipped(pg_url) == 0
    assert shipped_counts(store) == once_each(900)
    assert shipped_counts(store, "other") == once_each(10)
    objects = shipped(store)
    for key, lines in objects.items():
        match = KEY.match(key)
        assert match, key
        year, month, day, first, last = match.groups()
        assert {day_of(line["createdAt"]).isoformat() for line in lines} == {
            f"{year}-{month}-{day}"
        }  # an object holds one UTC date
        assert len(lines) <= limits.batch_events
        with store.open_read(key) as handle:
            assert len(gzip.decompress(handle.read())) <= limits.file_bytes
        order = [int(line["requestParams"]["n"]) for line in lines]
        assert order == sorted(order)  # id order, which is recording order here
        assert int(first) <= int(last)
    assert len({key.rsplit("/", 1)[0] for key in objects}) == 4  # 3 days from 22:13 UTC: 4 dates
    # The line format, exactly these keys in this order.
    first_line = next(iter(objects.values()))[0]
    assert list(first_line) == [
        "opType",
        "createdAt",
        "nameHints",
        "userEmail",
        "customerName",
        "responseCode",
        "requestParams",
        "requestPayload",
        "latencyInMillis",
    ]

    # A second flush has nothing to do; new events go to new objects.
    assert flush_user_events(store=store, database_url=pg_url, limits=limits).events == 0
    insert(pg_url, make_events(5, start=T0 + 3 * DAY_MS, tag="late"))
    again = flush_user_events(store=store, database_url=pg_url, limits=limits)
    assert again.events == 5 and len(again.objects) == 1
    assert sum(shipped_counts(store).values()) == 905


def test_a_redone_batch_rewrites_the_same_objects_with_the_same_bytes(
    store: ObjectStore, catalog_url: str
) -> None:
    insert(catalog_url, make_events(300, step_ms=1000))
    limits = ShipLimits(batch_events=1000, file_bytes=8 * 1024)
    first = flush_user_events(store=store, database_url=catalog_url, limits=limits)
    before = {key: _raw(store, key) for key in first.objects}
    with session_scope(catalog_url) as session:  # as if the flush had died before its commit
        state = catalog.shipping_state(session, namespace="app", lock=True)
        state.pending_through, state.shipped_through = state.shipped_through, 0
    redone = flush_user_events(store=store, database_url=catalog_url, limits=limits)
    assert redone.objects == first.objects
    assert {key: _raw(store, key) for key in redone.objects} == before
    assert shipped_counts(store) == once_each(300)


def _raw(store: ObjectStore, key: str) -> bytes:
    with store.open_read(key) as handle:
        return handle.read()


class FailingStore:
    """Wraps a store; put_object fails while `down` (a store outage)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner, self.down, self.puts = inner, True, 0

    def put_object(self, key: str, data: bytes) -> None:
        if self.down:
            raise TransientError("the store is down")
        self.puts += 1
        self.inner.put_object(key, data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_backlog_after_an_outage_ships_in_bounded_batches(tmp_path: Path, pg_url: str) -> None:
    local = LocalStore(tmp_path / "store")
    local.init()
    store = FailingStore(local)
    limits = ShipLimits(batch_events=250, file_bytes=1024 * 1024)
    for day in range(4):  # four days of events pile up while the store is down
        insert(pg_url, make_events(250, start=T0 + day * DAY_MS, step_ms=10, tag=str(day)))
        with pytest.raises(TransientError):
            flush_user_events(store=store, database_url=pg_url, limits=limits)  # type: ignore[arg-type]
    assert unshipped(pg_url) == 1000
    store.down = False
    result = flush_user_events(store=store, database_url=pg_url, limits=limits)  # type: ignore[arg-type]
    assert result.events == 1000 and result.batches == 4
    assert all(len(lines) <= 250 for lines in shipped(local).values())
    assert shipped_counts(local) == {
        key: 1 for day in range(4) for key in once_each(250, tag=str(day))
    }
    assert unshipped(pg_url) == 0


def test_export_reads_back_a_time_range(store: ObjectStore, pg_url: str) -> None:
    events = make_events(48, step_ms=3_600_000)  # hourly for two days
    insert(pg_url, events)
    flush_user_events(store=store, database_url=pg_url, limits=ShipLimits(batch_events=10))
    since = datetime.fromtimestamp((T0 + 5 * 3_600_000) / 1000, tz=UTC)
    until = since + timedelta(hours=30)
    lines = list(export_events(store, namespace="app", since=since, until=until))
    got = [json.loads(line)["requestParams"]["n"] for line in lines]
    assert got == [str(i) for i in range(5, 35)]


def test_interleaved_dates_each_get_their_objects(tmp_path: Path, catalog_url: str) -> None:
    """Client-supplied createdAt may jump between dates: every object still holds one date."""
    store = LocalStore(tmp_path / "store")
    store.init()
    events = make_events(600)
    # six dates, visited round-robin: more dates than objects kept open at once
    jumbled = [
        replace(event, created_at=T0 + (n % 6) * DAY_MS + n) for n, event in enumerate(events)
    ]
    insert(catalog_url, jumbled)
    result = flush_user_events(store=store, database_url=catalog_url, limits=ShipLimits())
    assert result.events == 600 and shipped_counts(store) == once_each(600)
    for key, lines in shipped(store).items():
        assert len({day_of(line["createdAt"]) for line in lines}) == 1, key
    # Ids increase through the stream, so a date's objects never overlap in id range.
    ranges: dict[str, list[tuple[int, int]]] = {}
    for key in result.objects:
        match = KEY.match(key)
        assert match
        *day, first, last = match.groups()
        ranges.setdefault("-".join(day), []).append((int(first), int(last)))
    for spans in ranges.values():
        spans.sort()
        assert all(a[1] < b[0] for a, b in pairwise(spans))


def test_every_character_comes_back_as_it_was_recorded(tmp_path: Path, catalog_url: str) -> None:
    store = LocalStore(tmp_path / "store")
    store.init()
    tricky = 'quote " backslash \\ tab \t newline \n nul-ish \x01 é 漢字 \u2028 emoji 🎉 \\n'
    events = [
        replace(
            event,
            user_email=f"{tricky}@x",
            customer_name=tricky,
            name_hints=(tricky, "Plain"),
            request_params={"k\\": tricky, "tab\t": "v"},
            request_payload=tricky * (n + 1),
        )
        for n, event in enumerate(make_events(40))
    ]
    insert(catalog_url, events)
    flush_user_events(store=store, database_url=catalog_url, limits=ShipLimits(file_bytes=4096))
    lines = sorted(
        (line for lines in shipped(store).values() for line in lines),
        key=lambda line: len(line["requestPayload"]),
    )
    assert len(lines) == 40
    for n, (line, event) in enumerate(zip(lines, events, strict=True)):
        assert line == {
            "opType": event.op_type,
            "createdAt": event.created_at,
            "nameHints": [tricky, "Plain"],
            "userEmail": f"{tricky}@x",
            "customerName": tricky,
            "responseCode": event.response_code,
            "requestParams": {"k\\": tricky, "tab\t": "v"},
            "requestPayload": tricky * (n + 1),
            "latencyInMillis": event.latency_ms,
        }
    since = datetime.fromtimestamp(T0 / 1000, tz=UTC)
    exported = list(export_events(store, namespace="app", since=since, until=since + timedelta(1)))
    assert sorted(json.loads(line)["requestPayload"] for line in exported) == sorted(
        line["requestPayload"] for line in lines
    )


def test_without_psql_the_drivers_copy_makes_the_same_objects(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert(pg_url, make_events(700, step_ms=DAY_MS // 200))
    limits = ShipLimits(batch_events=300, file_bytes=8 * 1024)
    with_psql = LocalStore(tmp_path / "a")
    with_psql.init()
    first = flush_user_events(store=with_psql, database_url=pg_url, limits=limits)
    with session_scope(pg_url) as session:  # ship it all again, this time through psycopg
        state = catalog.shipping_state(session, namespace="app", lock=True)
        state.shipped_through = 0
    monkeypatch.setattr(rows.shutil, "which", lambda _name: None)
    monkeypatch.setattr(rows, "IDS_PER_COPY", 53)
    without = LocalStore(tmp_path / "b")
    without.init()
    second = flush_user_events(store=without, database_url=pg_url, limits=limits)
    assert second.objects == first.objects and len(first.objects) > 5
    assert [_raw(without, key) for key in second.objects] == [
        _raw(with_psql, key) for key in first.objects
    ]

"""Helpers shared by the user-event tests: making events, reading shipped objects back."""

import gzip
import json
from collections import Counter
from typing import Any

from workers.audit.catalog import NewEvent
from workers.audit.layout import SUFFIX
from workers.audit.user_events import store_events
from workers.stores.base import ObjectStore

DAY_MS = 86_400_000
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def make_events(
    count: int, *, namespace: str = "app", start: int = T0, step_ms: int = 1000, tag: str = "e"
) -> list[NewEvent]:
    return [
        NewEvent(
            namespace=namespace,
            op_type="Mutation" if i % 2 else "Query",
            created_at=start + i * step_ms,
            name_hints=("OnDemandBackup",),
            user_email=f"user{i % 7}@example.com",
            customer_name="acme",
            response_code=200,
            request_params={"n": str(i), "tag": tag},
            request_payload=json.dumps({"i": i, "pad": "x" * (i % 50)}),
            latency_ms=i % 100,
        )
        for i in range(count)
    ]


def insert(database_url: str, events: list[NewEvent], chunk: int = 5000) -> None:
    for start in range(0, len(events), chunk):
        store_events(database_url, events[start : start + chunk])


def read_object(store: ObjectStore, key: str) -> list[dict[str, Any]]:
    with store.open_read(key) as handle:
        data = handle.read()
    text = gzip.decompress(data).decode()  # JSON Lines end lines at \n only (not at U+2028)
    return [json.loads(line) for line in text.split("\n") if line]


def shipped(store: ObjectStore, namespace: str = "app") -> dict[str, list[dict[str, Any]]]:
    """Every shipped object of the namespace and its events."""
    return {
        info.key: read_object(store, info.key)
        for info in store.list(f"{namespace}/user-events-audit/")
        if info.key.endswith(SUFFIX)
    }


def shipped_counts(store: ObjectStore, namespace: str = "app") -> Counter[str]:
    """How many times each event (`<tag>/<n>` of make_events) appears in the store."""
    counts: Counter[str] = Counter()
    for events in shipped(store, namespace).values():
        counts.update(f"{e['requestParams']['tag']}/{e['requestParams']['n']}" for e in events)
    return counts


def once_each(count: int, tag: str = "e") -> dict[str, int]:
    """What shipped_counts says when make_events(count, tag=tag) all shipped exactly once."""
    return {f"{tag}/{n}": 1 for n in range(count)}

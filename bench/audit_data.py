"""Realistic user events for the audit benchmark, loaded into the catalog with COPY.

Each event looks like what the platform sends: a handful of request
parameters, a JSON payload of ~150-400 bytes, a few users and customers,
spread over `days` days. Deterministic for a seed.
"""

import json
import random
from collections.abc import Iterator
from typing import Any

import psycopg

OPERATIONS = ["CreateProject", "RunPipeline", "UpdateJob", "DeleteDataset", "ListGems", "Login"]
DAY_MS = 86_400_000
START_MS = 1_763_000_000_000  # 2025-11-13


def line_events(count: int, *, seed: int = 5, days: int = 3) -> Iterator[dict[str, Any]]:
    """Events in the line format (for the API)."""
    rng = random.Random(seed)
    step = days * DAY_MS // max(count, 1)
    for n in range(count):
        op = OPERATIONS[n % len(OPERATIONS)]
        yield {
            "opType": "Query" if op.startswith("List") else "Mutation",
            "createdAt": START_MS + n * step,
            "nameHints": [op],
            "userEmail": f"user{rng.randrange(500)}@customer{n % 20}.example.com",
            "customerName": f"customer{n % 20}",
            "responseCode": 200 if rng.random() > 0.02 else 500,
            "requestParams": {"projectId": str(rng.randrange(10**6)), "branch": "main"},
            "requestPayload": json.dumps(
                {
                    "name": f"pipeline_{rng.randrange(10**5)}",
                    "description": " ".join(
                        rng.choice(["load", "clean", "join", "daily", "orders", "sales", "x"])
                        for _ in range(rng.randrange(10, 50))
                    ),
                    "version": rng.randrange(100),
                }
            ),
            "latencyInMillis": rng.randrange(1, 900),
        }


def fill(conninfo: str, count: int, *, namespace: str = "app", seed: int = 5) -> None:
    """COPY `count` events into user_events (the catalog must be migrated)."""
    columns = (
        "namespace, op_type, created_at, name_hints, user_email, customer_name, "
        "response_code, request_params, request_payload, latency_ms"
    )
    with (
        psycopg.connect(conninfo) as connection,
        connection.cursor() as cursor,
        cursor.copy(f"COPY user_events ({columns}) FROM STDIN") as copy,
    ):
        for event in line_events(count, seed=seed):
            copy.write_row(
                (
                    namespace,
                    event["opType"],
                    event["createdAt"],
                    json.dumps(event["nameHints"]),
                    event["userEmail"],
                    event["customerName"],
                    event["responseCode"],
                    json.dumps(event["requestParams"]),
                    event["requestPayload"],
                    event["latencyInMillis"],
                )
            )

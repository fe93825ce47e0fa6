"""Schemathesis fuzzes every operation of the OpenAPI document: no input gives a 500.

The app runs in-process on a real SQLite catalog and local store, with a
recording enqueue; every generated request is sent with a key and without.
"""

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from api.main import create_app
from tests.unit.test_api import AUTH, KEY, RecordingEnqueue, make_fleet
from workers.catalog.db import dispose_engines


def operations() -> list[tuple[str, str]]:
    document = create_app(lambda: None, RecordingEnqueue()).openapi()  # type: ignore[arg-type,return-value]
    return [
        (method.upper(), path) for path, methods in document["paths"].items() for method in methods
    ]


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    fleet = make_fleet(tmp_path_factory.mktemp("fuzz"), f"{KEY}:ops@example.com:acme")
    app = create_app(lambda: fleet, RecordingEnqueue())
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    dispose_engines()


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("BROKER_URL", "redis://127.0.0.1:1/0")  # refused at once


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("method", "path"), operations())
def test_no_input_makes_the_api_answer_500(schema: Any, method: str, path: str) -> None:
    operation = schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=AUTH, checks=[not_a_server_error])
        case.call_and_validate(checks=[not_a_server_error])  # and without a key

    fuzz()

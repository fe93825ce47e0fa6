"""An /athena call while the fleet cannot be built is refused from its headers: no body is read."""

import asyncio
from typing import Any

from api.main import create_app
from workers.errors import ConfigError
from workers.fleet import Fleet

BASE = "/athena/api/v1"


def broken() -> Fleet:
    raise ConfigError("BROKER_URL: not a redis URL")  # e.g. a bad setting after a deploy


def call(path: str) -> tuple[list[dict[str, Any]], int]:
    app = create_app(broken, lambda *_: "task")
    sent: list[dict[str, Any]] = []
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 65536, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-length", str(8 * 1024 * 1024).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=30))
    return sent, reads


def test_an_athena_call_gets_503_without_its_body_being_read() -> None:
    for path in (f"{BASE}/userevents", f"{BASE}/ondemandbackup"):
        sent, reads = call(path)
        assert sent[0]["status"] == 503, path
        assert reads == 0, f"{path}: the body was read ({reads} chunks) by an unready API"
        assert b"BROKER_URL" not in sent[1]["body"]  # details go to the log only

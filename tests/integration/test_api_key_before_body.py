"""The key is checked before the body is read: a real uvicorn server, a raw socket.

The client declares a large body (under the 10 MiB limit of POST /userevents)
and sends none of it. Without a key the 401 must arrive anyway; the old code
read the body first (api/limits.py) and so waited for bytes that never came.
"""

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from api.main import create_app
from api.recorder import recorder
from tests.fleet_processes import free_port
from tests.scoped_api import BASE, KEY_OF, make_fleet
from workers.catalog.db import dispose_engines

pytestmark = pytest.mark.integration

READ_TIMEOUT = 10.0  # seconds: bounds every socket read, so a hang fails instead of blocking
DECLARED = 8 * 1024 * 1024  # under the 10 MiB limit: the body limit alone would wait for it


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setenv("BROKER_URL", "redis://127.0.0.1:1/0")
    fleet = make_fleet(f"sqlite:///{tmp_path / 'catalog.db'}", tmp_path / "store")
    port = free_port()
    config = uvicorn.Config(
        create_app(lambda: fleet, lambda *_: "task"),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        recorder.drain()
        dispose_engines()


def head_only(port: int, *headers: str, timeout: float = READ_TIMEOUT) -> bytes:
    """Send a request's head declaring a body, send no body, and read what comes back."""
    lines = [
        f"POST {BASE}/userevents HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        *headers,
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        received = b""
        try:
            while b"\r\n\r\n" not in received or not received.endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except TimeoutError:
            pass  # what came so far is the answer (nothing, on the old code)
        return received


@pytest.mark.parametrize(
    "body_header", [f"Content-Length: {DECLARED}", "Transfer-Encoding: chunked"]
)
@pytest.mark.parametrize("authorization", [None, "Authorization: not-a-key"])
def test_a_call_without_a_valid_key_is_refused_before_its_body_arrives(
    server: int, body_header: str, authorization: str | None
) -> None:
    headers = [body_header] + ([authorization] if authorization else [])
    answer = head_only(server, *headers)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"www-authenticate: bearer" in head.lower()
    assert body.startswith(b'{"code": 401, "message": ')


def test_a_valid_key_does_wait_for_the_body(server: int) -> None:
    # The contrast that gives the test above its meaning: with a key, the body is
    # read before anything is answered, so nothing comes while it is missing.
    answer = head_only(
        server, f"Content-Length: {DECLARED}", f"Authorization: {KEY_OF['app']}", timeout=1.0
    )
    assert answer == b""

"""A real HTTP server on 127.0.0.1 that records the JSON posted to it (an alert webhook).

`failures` makes the next N requests answer 503, to exercise retries; clearing
`release` holds every request until it is set again (a webhook that hangs).
"""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookServer:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.requests = 0
        self.failures = 0
        self.release = threading.Event()
        self.release.set()
        self.held = 0  # requests that waited for `release`
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if not owner.release.is_set():
                    with owner.lock:
                        owner.held += 1
                    owner.release.wait(120)
                with owner.lock:
                    owner.requests += 1
                    failing = owner.failures > 0
                    if failing:
                        owner.failures -= 1
                    else:
                        owner.received.append(json.loads(body))
                self.send_response(503 if failing else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0K3N-s3cret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def events(self) -> list[str]:
        with self.lock:
            return [body["event"] for body in self.received]


@contextmanager
def webhook_server() -> Iterator[WebhookServer]:
    server = WebhookServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.server.shutdown()
        server.server.server_close()

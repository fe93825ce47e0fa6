"""workers.cli.healthcheck: the role from the container's first process, and each role's probe."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from workers.cli.healthcheck import option_value, role_from_cmdline, run


@pytest.mark.parametrize(
    ("argv", "role"),
    [
        (["tini", "--", "backfleet", "worker", "--queues", "backup"], "worker"),
        (["/opt/backfleet/bin/backfleet", "api"], "api"),
        (["python", "-m", "celery", "-A", "workers.app", "worker", "-Q", "backup"], "worker"),
        (["python", "-m", "celery", "-A", "tasks.app", "worker", "-Q", "backup"], "worker"),
        (["python", "-m", "celery", "worker"], None),
        (["backfleet"], None),
    ],
)
def test_the_role_is_the_word_after_backfleet(argv: list[str], role: str | None) -> None:
    assert role_from_cmdline(argv) == role


def test_option_values_in_both_spellings() -> None:
    assert option_value(["flower", "--port=5600"], "--port") == "5600"
    assert option_value(["flower", "--port", "5601"], "--port") == "5601"
    assert option_value(["flower"], "--port") is None


class _Handler(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path in ("/healthz", "/healthcheck") else 404)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[HTTPServer]:
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_api_and_flower_are_healthy_when_their_endpoint_answers_200(
    http_server: HTTPServer,
) -> None:
    port = str(http_server.server_address[1])
    _Handler.status = 200
    assert run(["api", "--port", port]) == 0
    assert run(["flower", f"--port={port}"]) == 0


def test_an_error_status_or_nothing_listening_is_unhealthy(
    http_server: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    port = str(http_server.server_address[1])
    _Handler.status = 503
    try:
        assert run(["api", "--port", port]) == 1
    finally:
        _Handler.status = 200
    http_server.server_close()
    assert run(["flower", "--port", port]) == 1
    assert "unhealthy flower" in capsys.readouterr().err


def test_one_shot_roles_are_healthy_while_they_run() -> None:
    assert run(["migrate"]) == 0


def test_beat_needs_the_broker_and_never_prints_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from workers.settings import get_settings

    monkeypatch.setenv("BROKER_URL", "redis://:hunter2-secret@127.0.0.1:1/0")
    get_settings.cache_clear()
    try:
        assert run(["beat"]) == 1
    finally:
        get_settings.cache_clear()
    assert "hunter2-secret" not in capsys.readouterr().err

"""A TCP forwarder on 127.0.0.1 that can take its server away for a while.

`outage(seconds)` cuts every open connection and turns new ones away (accepted
and closed at once, as a restarting server does) until the time is up;
`hang(seconds)` keeps every connection open but passes no byte meanwhile (a
server that stopped answering). It stops by itself after `lifetime` seconds.
"""

import contextlib
import socket
import threading
import time
from types import TracebackType


class TcpGate:
    def __init__(self, upstream: tuple[str, int], lifetime: float = 600) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.deadline = time.monotonic() + lifetime
        self.down_until = 0.0
        self.hung_until = 0.0
        self.links: set[socket.socket] = set()
        self.guard = threading.Lock()
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def outage(self, seconds: float) -> None:
        self.down_until = time.monotonic() + seconds
        with self.guard:
            for sock in list(self.links):
                _close(sock)
            self.links.clear()

    def hang(self, seconds: float) -> None:
        self.hung_until = time.monotonic() + seconds

    @property
    def is_down(self) -> bool:
        return time.monotonic() < self.down_until

    def _serve(self) -> None:
        self.listener.settimeout(0.5)
        while not self.closed.is_set() and time.monotonic() < self.deadline:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            if self.is_down:
                _close(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            with self.guard:
                self.links.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()
        self.close()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                while time.monotonic() < self.hung_until and not self.closed.is_set():
                    time.sleep(0.1)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                _close(sock)
                with self.guard:
                    self.links.discard(sock)

    def close(self) -> None:
        self.closed.set()
        _close(self.listener)
        with self.guard:
            for sock in list(self.links):
                _close(sock)
            self.links.clear()

    def __enter__(self) -> "TcpGate":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()

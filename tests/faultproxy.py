"""A small HTTP/1.1 proxy on 127.0.0.1 that injects network faults in front of a server.

It understands just enough HTTP to see request boundaries on keep-alive
connections (Content-Length and chunked bodies), so faults hit chosen requests:

- `reset`: read the request, then reset the connection (RST) without answering;
- `cut`: forward the request, relay the response head and `after_bytes` of its
  body, then reset (a download dropped mid-body);
- `error`: answer a 503 itself, S3's `SlowDown` or Azure's `ServerBusy`;
- `stall`: say nothing for `stall` seconds, then close;
- `corrupt`: flip one byte of the request body (at `at`, else its middle) and
  forward it: the server must refuse it (a checksum or Content-MD5 mismatch).

Each Fault counts the requests its `match` accepts and fires on the `nth` of
them (1-based) or on a seeded random `fraction`, at most `limit` times.
`injected` counts faults, `requests` records every request seen and `answers`
every forwarded request with the status the server gave it. The proxy stops by
itself after `lifetime` seconds, and on close().
"""

import contextlib
import random
import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import BinaryIO, Literal

IO_TIMEOUT = 30.0
Action = Literal["reset", "cut", "error", "stall", "corrupt"]


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names
    body_size: int

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


def any_request(request: Request) -> bool:
    return True


@dataclass
class Fault:
    action: Action
    match: Callable[[Request], bool] = any_request
    nth: Collection[int] = ()
    fraction: float = 0.0
    limit: int | None = None
    after_bytes: int = 0  # cut: body bytes relayed before the reset
    stall: float = 2.0  # stall: seconds of silence before closing
    at: int | None = None  # corrupt: which body byte to flip (None: the middle one)
    flavor: Literal["s3", "azure"] = "s3"  # error: whose 503 to answer
    seen: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def fires(self, request: Request, rng: random.Random) -> bool:
        if not self.match(request):
            return False
        self.seen += 1
        if self.limit is not None and self.fired >= self.limit:
            return False
        hit = self.seen in self.nth or (self.fraction > 0 and rng.random() < self.fraction)
        self.fired += hit
        return hit


def error_response(flavor: str, *, with_body: bool) -> bytes:
    if flavor == "azure":
        body = (
            b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
            b"<Message>The server is busy.</Message></Error>"
        )
        head = b"HTTP/1.1 503 The server is busy.\r\nx-ms-error-code: ServerBusy\r\n"
    else:
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message>"
            b"<RequestId>FAULTPROXY</RequestId></Error>"
        )
        head = b"HTTP/1.1 503 Slow Down\r\n"
    head += b"Content-Type: application/xml\r\nContent-Length: %d\r\n\r\n" % len(body)
    return head + (body if with_body else b"")


class _Closed(Exception):
    """The peer closed the connection between requests."""


def _read_head(stream: BinaryIO) -> list[bytes]:
    lines: list[bytes] = []
    while True:
        line = stream.readline(65536)
        if not line:
            if lines:
                raise ConnectionError("connection closed inside a message head")
            raise _Closed
        if line in (b"\r\n", b"\n"):
            if lines:
                return lines
            continue
        lines.append(line)


def _headers(lines: Sequence[bytes]) -> dict[str, str]:
    found = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        found[name.strip().lower()] = value.strip()
    return found


def _copy_body(
    source: BinaryIO, headers: dict[str, str], sink: Callable[[bytes], None], *, until_close: bool
) -> int:
    """Relay one message body; returns its size (chunked bodies are relayed as they are)."""
    total = 0
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = source.readline(65536)
            sink(size_line)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    trailer = source.readline(65536)
                    sink(trailer)
                    if trailer in (b"\r\n", b"\n", b""):
                        return total
            remaining = size + 2  # the data and its CRLF
            while remaining:
                data = source.read(min(remaining, 65536))
                if not data:
                    raise ConnectionError("chunked body cut short")
                sink(data)
                remaining -= len(data)
            total += size
    length = int(headers.get("content-length", "0") or 0) if not until_close else -1
    while length < 0 or total < length:
        want = 65536 if length < 0 else min(65536, length - total)
        data = source.read1(want) if hasattr(source, "read1") else source.read(want)
        if not data:
            if length < 0:
                return total
            raise ConnectionError("body cut short")
        sink(data)
        total += len(data)
    return total


def _reset(sock: socket.socket) -> None:
    """Close with RST, as a crashed peer or a middlebox would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _idle_and_open(sock: socket.socket) -> bool:
    """An idle keep-alive connection has nothing to read; readable means closed (or junk)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return True
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except OSError:
        return False


class _Cut(Exception):
    """Enough of the response was relayed: reset now."""


class FaultProxy:
    def __init__(
        self,
        upstream: tuple[str, int],
        faults: Sequence[Fault] = (),
        *,
        lifetime: float = 120.0,
        seed: int = 0,
    ) -> None:
        self.upstream = upstream
        self.faults = list(faults)
        self.lifetime = lifetime
        self.injected = 0
        self.by_action: Counter[str] = Counter()
        self.requests: list[Request] = []
        self.answers: list[tuple[Request, int]] = []  # forwarded requests and their status
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, name="faultproxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._listener.close()

    # --- bookkeeping ---
    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _choose(self, request: Request) -> Fault | None:
        with self._lock:
            self.requests.append(request)
            chosen = None
            for fault in self.faults:  # every fault counts the request, the first firing wins
                if fault.fires(request, self._rng) and chosen is None:
                    chosen = fault
            if chosen is not None:
                self.injected += 1
                self.by_action[chosen.action] += 1
            return chosen

    # --- serving ---
    def _serve(self) -> None:
        deadline = time.monotonic() + self.lifetime
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            self._track(client)
            worker = threading.Thread(target=self._handle, args=(client,), daemon=True)
            worker.start()
        self._stop.set()

    def _handle(self, client: socket.socket) -> None:
        link = _Link(client)
        try:
            client.settimeout(IO_TIMEOUT)
            while not self._stop.is_set() and self._exchange(link):
                pass
        except (_Closed, OSError, ValueError):
            pass
        except _Cut:
            _reset(client)
        finally:
            link.close()

    def _exchange(self, link: "_Link") -> bool:
        """One request and its answer; False when the connection must end."""
        client = link.client
        head = _read_head(link.client_reader)
        method, target, _ = head[0].decode("latin-1").split(" ", 2)
        headers = _headers(head)
        if headers.get("expect", "").lower() == "100-continue":
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")  # we take the body ourselves
            head = [line for line in head if not line.lower().startswith(b"expect:")]
        body = bytearray()
        body_size = _copy_body(link.client_reader, headers, body.extend, until_close=False)
        request = Request(method, target, headers, body_size)
        fault = self._choose(request)
        if fault is not None and fault.action == "reset":
            _reset(client)
            return False
        if fault is not None and fault.action == "stall":
            self._stop.wait(fault.stall)
            return False
        if fault is not None and fault.action == "error":
            client.sendall(error_response(fault.flavor, with_body=method != "HEAD"))
            return True
        if fault is not None and fault.action == "corrupt" and body:
            where = len(body) // 2 if fault.at is None else fault.at
            body[where] ^= 0xFF  # one byte, every bit of it: what no checksum may miss
        if link.server is not None and not _idle_and_open(link.server):
            link.drop_server()  # the server hung up between requests: dial again
        if link.server is None:
            link.connect(self.upstream)
            self._track(link.server)  # type: ignore[arg-type]
        assert link.server is not None and link.server_reader is not None
        # A server may answer early (e.g. NoSuchUpload) and hang up mid-body: relay its answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            link.server.sendall(b"".join(head) + b"\r\n" + bytes(body))
        cut = fault if fault is not None and fault.action == "cut" else None
        return self._relay_response(link, request, cut)

    def _relay_response(self, link: "_Link", request: Request, fault: Fault | None) -> bool:
        assert link.server_reader is not None
        method = request.method
        head = _read_head(link.server_reader)
        status = int(head[0].split()[1])
        with self._lock:
            self.answers.append((request, status))
        headers = _headers(head)
        link.client.sendall(b"".join(head) + b"\r\n")
        budget = fault.after_bytes if fault is not None else -1

        def send(data: bytes) -> None:
            nonlocal budget
            if budget >= 0 and len(data) >= budget:
                link.client.sendall(data[:budget])
                raise _Cut
            if budget >= 0:
                budget -= len(data)
            link.client.sendall(data)

        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        framed = "content-length" in headers or "chunked" in headers.get("transfer-encoding", "")
        if not no_body:
            _copy_body(link.server_reader, headers, send, until_close=not framed)
        if budget >= 0:
            raise _Cut  # the response ended before the cut point: cut at its end
        if headers.get("connection", "").lower() == "close":
            return False  # the server hung up after this answer: so do we
        return framed or no_body


class _Link:
    """One client connection and the upstream connection it was paired with."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.client_reader: BinaryIO = client.makefile("rb")
        self.server: socket.socket | None = None
        self.server_reader: BinaryIO | None = None

    def connect(self, upstream: tuple[str, int]) -> None:
        self.server = socket.create_connection(upstream, timeout=IO_TIMEOUT)
        self.server_reader = self.server.makefile("rb")

    def drop_server(self) -> None:
        if self.server is not None:
            with contextlib.suppress(OSError):
                self.server.close()
        self.server = self.server_reader = None

    def close(self) -> None:
        for sock in (self.client, self.server):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()

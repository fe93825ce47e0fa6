"""A request-body size limit, per path, as plain ASGI middleware.

A declared Content-Length over the limit is refused before a byte is read;
otherwise the body is read (counting the bytes actually streamed, whatever the
header claimed) into memory, and only a body within the limit reaches the app.
The app then reads it again from memory. Memory per request is therefore at
most the path's limit plus one network chunk.
"""

import json
from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MiB = 1024 * 1024
DEFAULT_BODY_LIMIT = 1 * MiB


def human_size(size: int) -> str:
    """`1 MiB`, or a count of bytes when not a whole number of MiB."""
    if size % MiB == 0:
        return f"{size // MiB} MiB"
    return f"{size} bytes"


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        default_limit: int = DEFAULT_BODY_LIMIT,
        limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.default_limit = default_limit
        self.limits = dict(limits or {})

    def limit_for(self, path: str) -> int:
        return self.limits.get(path.rstrip("/") or "/", self.default_limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _reply(send, 400, "Content-Length is not a number")
                return
            if length > limit:
                await _too_large(send, limit)
                return

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left: nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break

        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect

        await self.app(scope, replay, send)


async def _too_large(send: Send, limit: int) -> None:
    await _reply(
        send, 413, f"request body is larger than this endpoint's {human_size(limit)} limit"
    )


async def _reply(send: Send, code: int, message: str) -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

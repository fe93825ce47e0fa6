"""Every error answers JSON `{"code": N, "message": "..."}`, with no secret in the message."""

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.deps import known_secrets
from workers.errors import (
    BackfleetError,
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from workers.redact import redact

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"

# The HTTP status of each kind of error, most specific first: the first match decides.
STATUS_OF: Sequence[tuple[type[BackfleetError], int]] = (
    (ForbiddenError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (InvalidRequestError, 422),
    (PermanentError, 400),
    (TransientError, 503),
)


def error_response(code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=code, headers=headers)


def status_of(exc: BackfleetError) -> int:
    for kind, code in STATUS_OF:
        if isinstance(exc, kind):
            return code
    return 500


def _field(loc: Sequence[Any]) -> str:
    parts = [str(part) for part in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts)


_REASONS = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
}


def describe_validation(errors: Sequence[Any]) -> str:
    """`field: why` for each problem, never echoing the value sent."""
    lines: list[str] = []
    for error in errors:
        kind = str(error.get("type", ""))
        field = _field(error.get("loc", ()))
        if kind == "json_invalid":
            detail = (error.get("ctx") or {}).get("error")
            message = str(error.get("msg", "JSON decode error"))
            if message == "JSON decode error":  # FastAPI's own parser
                message = "request body is not valid JSON" + (f": {detail}" if detail else "")
            lines.append(message)
            continue
        reason = _REASONS.get(kind) or str(error.get("msg", "is not valid"))
        reason = reason.removeprefix("Value error, ")
        lines.append(f"{field}: {reason}" if field else reason)
    return "; ".join(lines) or "the request is not valid"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}) or None)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, describe_validation(exc.errors()))


async def _backfleet_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BackfleetError)
    code = status_of(exc)
    message = redact(str(exc), known_secrets(request)) or type(exc).__name__
    if code >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, message)
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if isinstance(exc, TransientError) else None
    return error_response(code, message, headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "unexpected error on %s %s: %s",
        request.method,
        request.url.path,
        redact(f"{type(exc).__name__}: {exc}", known_secrets(request)),
        exc_info=exc,
    )
    return error_response(500, "internal error; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(BackfleetError, _backfleet_error)
    app.add_exception_handler(Exception, _unexpected_error)

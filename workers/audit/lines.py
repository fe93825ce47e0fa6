"""The user-event line format (DESIGN.md): validating incoming lines, writing outgoing ones.

One JSON object per line with exactly these keys: opType, createdAt (epoch ms),
nameHints, userEmail, customerName, responseCode, requestParams (string to
string), requestPayload, latencyInMillis. Lines are written with the keys in
that order and no spaces, so the same event always makes the same bytes.
"""

import json
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from workers.errors import InvalidRequestError

MAX_PAYLOAD_CHARS = 64 * 1024  # longer request payloads are cut, and say so
TRUNCATED = "…[truncated]"
MAX_ERRORS_REPORTED = 20
EPOCH_MS_MAX = 253402300799999  # 9999-12-31T23:59:59.999Z

Short = Annotated[str, Field(max_length=320)]


class EventLine(BaseModel):
    """One incoming event; unknown keys are refused so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    op_type: Annotated[str, Field(alias="opType", min_length=1, max_length=64)]
    created_at: Annotated[int, Field(alias="createdAt", ge=0, le=EPOCH_MS_MAX, strict=True)]
    name_hints: Annotated[list[Short], Field(alias="nameHints", max_length=32)] = []
    user_email: Annotated[str, Field(alias="userEmail", max_length=320)] = ""
    customer_name: Annotated[str, Field(alias="customerName", max_length=256)] = ""
    response_code: Annotated[int, Field(alias="responseCode", ge=0, le=999, strict=True)] = 200
    request_params: Annotated[dict[Short, str], Field(alias="requestParams", max_length=256)] = {}
    request_payload: Annotated[str, Field(alias="requestPayload")] = ""
    latency_ms: Annotated[int, Field(alias="latencyInMillis", ge=0, strict=True)] = 0


_ONE = TypeAdapter(EventLine)


class InvalidEventsError(InvalidRequestError):
    """Some lines are not events; `problems` pairs each 1-based line number with why."""

    def __init__(self, problems: Sequence[tuple[int, str]]) -> None:
        self.problems = list(problems)
        shown = "; ".join(f"line {number}: {why}" for number, why in problems[:MAX_ERRORS_REPORTED])
        more = len(problems) - MAX_ERRORS_REPORTED
        tail = f"; and {more} more" if more > 0 else ""
        super().__init__(f"{len(problems)} invalid event line(s), nothing stored: {shown}{tail}")


def _why(error: ValidationError) -> str:
    reasons = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"])
        kind = item["type"]
        message = "is not a known key" if kind == "extra_forbidden" else item["msg"]
        if kind == "missing":
            message = "is required"
        reasons.append(f"{field}: {message}" if field else message)
    return ", ".join(reasons)


def split_body(raw: bytes, *, json_lines: bool | None = None) -> list[tuple[int, Any]]:
    """(line number, decoded JSON) of each event in a JSON array or JSON Lines body.

    `json_lines=None` guesses: a body starting with `[` is an array. Array
    elements are numbered 1, 2, … like lines. Undecodable lines raise
    InvalidEventsError naming them all.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEventsError([(1, "the body is not UTF-8 text")]) from None
    stripped = text.lstrip()
    if json_lines is None:
        json_lines = not stripped.startswith("[")
    if not json_lines:
        try:
            items = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
            raise InvalidEventsError([(1, f"the body is not a valid JSON array{where}")]) from None
        if not isinstance(items, list):
            raise InvalidEventsError([(1, "the body must be a JSON array of events")])
        return list(enumerate(items, start=1))
    decoded: list[tuple[int, Any]] = []
    problems: list[tuple[int, str]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            decoded.append((number, json.loads(line)))
        except (json.JSONDecodeError, RecursionError):
            problems.append((number, "not valid JSON"))
    if problems:
        raise InvalidEventsError(problems)
    return decoded


def validate_events(items: Sequence[tuple[int, Any]]) -> list[EventLine]:
    """Every item as an EventLine, or InvalidEventsError naming every bad line."""
    events: list[EventLine] = []
    problems: list[tuple[int, str]] = []
    for number, item in items:
        if not isinstance(item, dict):
            problems.append((number, "must be a JSON object"))
            continue
        try:
            events.append(_ONE.validate_python(item))
        except ValidationError as exc:
            problems.append((number, _why(exc)))
    if problems:
        raise InvalidEventsError(problems)
    return events


def cut_payload(payload: str) -> str:
    if len(payload) <= MAX_PAYLOAD_CHARS:
        return payload
    return payload[: MAX_PAYLOAD_CHARS - len(TRUNCATED)] + TRUNCATED

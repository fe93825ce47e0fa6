"""The checked string forms of the API (DNS labels, backup timestamps) and how the
OpenAPI document shows them."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

from workers.services_config import DNS_LABEL
from workers.timestamps import is_timestamp, parse_moment


def _dns_label(value: str) -> str:
    # The message never echoes the value: the caller knows what was sent.
    if not DNS_LABEL.match(value):
        raise ValueError(
            "must be a DNS label: lower-case letters, digits and '-', 1-63 characters, "
            "starting and ending with a letter or digit"
        )
    return value


def _timestamp(value: str) -> str:
    if not is_timestamp(value):
        raise ValueError("must be a backup timestamp like 2023-02-02t17-03-15 (UTC)")
    return value


def _moment(value: Any) -> datetime:
    # Like the others, the message never echoes the value.
    try:
        if isinstance(value, str):
            return parse_moment(value)
    except ValueError:
        pass
    raise ValueError(
        "must be an RFC 3339 moment with its offset, such as 2023-02-02T16:42:07Z (UTC), "
        "and a real one"
    )


# The forms in the OpenAPI document, for the docs and for clients. Only the schema: the
# validators above still decide (and word the 422), exactly as before they were documented.
EXAMPLE_TS = "2023-02-02t17-03-15"


DNS_LABEL_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
    "minLength": 1,
    "maxLength": 63,
    "examples": ["app"],
}


TIMESTAMP_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}t[0-9]{2}-[0-9]{2}-[0-9]{2}$",
    "minLength": 19,
    "maxLength": 19,
    "examples": [EXAMPLE_TS],
}


EXAMPLE_MOMENT = "2023-02-02T16:42:07.250Z"


MOMENT_SCHEMA: dict[str, Any] = {
    "type": "string",
    "format": "date-time",
    "examples": [EXAMPLE_MOMENT],
}


DnsLabel = Annotated[str, AfterValidator(_dns_label), WithJsonSchema(DNS_LABEL_SCHEMA)]


Timestamp = Annotated[str, AfterValidator(_timestamp), WithJsonSchema(TIMESTAMP_SCHEMA)]


# An RFC 3339 moment with its offset (`Z`), as a UTC datetime: a restore's `targetTime`.
Moment = Annotated[datetime, BeforeValidator(_moment), WithJsonSchema(MOMENT_SCHEMA)]


# Strings documented so and checked later (GET restorestatus: from the query or the body).
TimestampText = Annotated[str, WithJsonSchema(TIMESTAMP_SCHEMA)]


DnsLabelText = Annotated[str, WithJsonSchema(DNS_LABEL_SCHEMA)]

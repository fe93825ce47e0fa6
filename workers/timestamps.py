"""Backup timestamps as the existing product writes them: UTC, e.g. `2023-02-02t17-03-15`."""

import re
from datetime import UTC, datetime

TIMESTAMP_FORMAT = "%Y-%m-%dt%H-%M-%S"
TIMESTAMP_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}t\d{2}-\d{2}-\d{2}$")


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """Parse a backup timestamp; ValueError names the expected form."""
    if not TIMESTAMP_PATTERN.match(text):
        raise ValueError(f"timestamp {text!r} is not of the form 2023-02-02t17-03-15")
    return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def is_timestamp(text: str) -> bool:
    try:
        parse_timestamp(text)
    except ValueError:
        return False
    return True

"""Where shipped events live: `<namespace>/user-events-audit/YYYY/MM/DD/<first>-<last>.jsonl.gz`.

Objects are grouped by the event's own UTC date and named by the lowest and
highest event id they hold (zero-padded, so key order is id order).
"""

from datetime import UTC, date, datetime

AUDIT_DIR = "user-events-audit"
SUFFIX = ".jsonl.gz"
ID_DIGITS = 15
DAY_MS = 86_400_000


def day_of(created_at_ms: int) -> date:
    return datetime.fromtimestamp(created_at_ms / 1000, tz=UTC).date()


def day_prefix(namespace: str, day: date) -> str:
    return f"{namespace}/{AUDIT_DIR}/{day:%Y/%m/%d}/"


def object_key(namespace: str, day: date, first_id: int, last_id: int) -> str:
    return f"{day_prefix(namespace, day)}{first_id:0{ID_DIGITS}d}-{last_id:0{ID_DIGITS}d}{SUFFIX}"

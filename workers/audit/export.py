"""Reading shipped events back from the store (`backfleet audit export`).

Walks the day folders from `since` to `until`, streams each object through
gunzip, and yields the lines whose createdAt falls in [since, until): the
auditor needs no knowledge of the layout. Memory is one line at a time.
"""

import gzip
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from workers.audit.layout import SUFFIX, day_prefix
from workers.stores.base import ObjectStore


def parse_moment(text: str) -> datetime:
    """An ISO date or date-time, read as UTC unless it names its zone."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date or time like 2026-11-01 or 2026-11-01T12:00"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def export_events(
    store: ObjectStore, *, namespace: str, since: datetime, until: datetime
) -> Iterator[str]:
    """Each shipped event line (no newline) of `namespace` created in [since, until)."""
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("since and until must be timezone-aware")
    low, high = _epoch_ms(since), _epoch_ms(until)
    day, last_day = since.date(), until.date()
    while day <= last_day:
        for info in store.list(day_prefix(namespace, day)):
            if not info.key.endswith(SUFFIX):
                continue
            with (
                store.open_read(info.key) as raw,
                gzip.GzipFile(fileobj=raw, mode="rb") as unzipped,
            ):
                for line in io.TextIOWrapper(unzipped, encoding="utf-8", newline="\n"):
                    line = line.rstrip("\n")
                    if line and low <= int(json.loads(line)["createdAt"]) < high:
                        yield line
        day += timedelta(days=1)

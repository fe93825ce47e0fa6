"""The declarative Base every table shares, its UTC datetime type, and the statuses
(the API's: Pending, Running, Success, Failed)."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, TypeDecorator, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase

# Re-exported: callers import the statuses with the models (statuses.py: no SQLAlchemy).
from workers.catalog.statuses import ACTIVE_STATUSES as ACTIVE_STATUSES
from workers.catalog.statuses import FAILED as FAILED
from workers.catalog.statuses import PENDING as PENDING
from workers.catalog.statuses import RUNNING as RUNNING
from workers.catalog.statuses import SUCCESS as SUCCESS

ACTIVE_WHERE = text("status IN ('Pending', 'Running')")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON}

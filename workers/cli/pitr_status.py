"""What `backfleet status` says of each `pitr` service: its recoverable window and its
streaming lag, as `GET …/backup/latest` says them (api/pitr.py)."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api.schemas import PitrWindowStatus
    from workers.fleet import Fleet


def pitr_of(fleet: "Fleet", namespace: str) -> "list[PitrWindowStatus]":
    from api.pitr import pitr_windows

    return pitr_windows(fleet, namespace)


def as_json(items: "list[PitrWindowStatus]") -> list[dict[str, Any]]:
    return [item.model_dump(mode="json", by_alias=True) for item in items]


def line(item: "PitrWindowStatus") -> str:
    """`pitr window 2026-…Z to 2026-…Z (promised 7d), lag 2 s, streaming`: one status line."""
    if item.earliest and item.latest:
        window = f"pitr window {item.earliest} to {item.latest}"
    else:
        window = f"pitr window none ({item.reason or 'nothing shipped'})"
    lag = "lag unknown" if item.lag_seconds is None else f"lag {item.lag_seconds:.0f} s"
    streaming = "streaming" if item.streaming else "NOT STREAMING"
    return f"{window} (promised {item.pitr_window}), {lag}, {streaming}"

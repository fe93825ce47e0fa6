"""Is a service's backup the size its history says it should be? Pure judgement, no I/O.

A service's source bytes (what the dump gave) and stored bytes (what the store
holds) are each compared with the median of its last N successful backups: a
drop of more than a fraction of the median, or a growth beyond a factor of it,
is an anomaly, unless it differs from the median by less than a floor of bytes
(a tiny service's doubling is no news); a dump of 0 bytes always is, history or
not. The median, not the
mean, so one odd backup in the history does not move the bar; and the odd
backups stay in the history, so a service that really shrank stops alerting
once most of its recent backups are the new size.

Stored bytes are compared only with backups stored the same way (encrypted or
not): age's header and tags make a small encrypted artifact several times its
plain size. Source bytes do not depend on it.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

# Fewer comparable backups than this (or than the history asked for): no judgement yet.
MIN_HISTORY = 3


@dataclass(frozen=True)
class SizePolicy:
    history: int  # how many earlier successful backups are compared with (0: none)
    drop: float  # a fraction of the median (0.5: half of it gone); 0: off
    growth: float  # a factor of the median (3.0: three times it); 0: off
    min_bytes: int = 0  # a size closer to the median than this is no anomaly (0: no floor)

    @property
    def min_history(self) -> int:
        return min(MIN_HISTORY, self.history)


@dataclass(frozen=True)
class ServiceSizes:
    """One service's artifacts in one backup, every volume summed."""

    source: int  # bytes the dump gave
    stored: int  # bytes in the store
    encrypted: bool


def judge(
    service: str, current: ServiceSizes, history: Sequence[ServiceSizes], policy: SizePolicy
) -> str | None:
    """What is anomalous about `current`, for people (None: nothing).

    `history`: the service's earlier successful backups, newest first.
    """
    if current.source == 0 or current.stored == 0:
        return f"{service}: 0 bytes ({_zero(current)})"
    if policy.history <= 0:
        return None
    recent = list(history[: policy.history])
    stored_alike = [h.stored for h in recent if h.encrypted == current.encrypted]
    findings = [
        finding
        for finding in (
            _compare("source", current.source, [h.source for h in recent], policy),
            _compare("stored", current.stored, stored_alike, policy),
        )
        if finding is not None
    ]
    return f"{service}: {'; '.join(findings)}" if findings else None


def _zero(current: ServiceSizes) -> str:
    if current.source == 0:
        return "the dump was empty"
    return f"nothing stored from {format_bytes(current.source)} of source"


def _compare(what: str, size: int, earlier: list[int], policy: SizePolicy) -> str | None:
    if len(earlier) < max(1, policy.min_history):
        return None
    middle = median(earlier)
    if middle <= 0:
        return None  # a history of empty dumps (each alerted already) sets no bar
    if abs(size - middle) < policy.min_bytes:
        return None  # too few bytes either way to matter, whatever the ratio
    of = f"the median {format_bytes(middle)} of the last {len(earlier)}"
    if policy.drop > 0 and size < middle * (1 - policy.drop):
        below = round(100 * (1 - size / middle))
        return f"{what} {format_bytes(size)}, {below} % below {of}"
    if policy.growth > 0 and size > middle * policy.growth:
        return f"{what} {format_bytes(size)}, {size / middle:.1f}x {of}"
    return None


def format_bytes(size: float) -> str:
    """`512 B`, `12.3 KiB`, `1.5 GiB`."""
    if size < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"

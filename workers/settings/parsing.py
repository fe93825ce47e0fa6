"""The parsers and checks behind the settings' string forms: sizes, prices, storage
classes, file modes (used by the Settings fields' validators and by their callers)."""

import math
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Literal

MiB = 1024 * 1024
StoreType = Literal["local", "s3", "azure-blob-storage"]


def _size_units() -> dict[str, int]:
    """`k`, `kb` (decimal) and `kib` (binary) for each prefix, and plain bytes."""
    units = {"": 1, "b": 1}
    for power, prefix in enumerate("kmgt", start=1):
        units |= {prefix: 1000**power, f"{prefix}b": 1000**power, f"{prefix}ib": 1024**power}
    return units


_SIZE_UNITS = _size_units()


def parse_size(text: str) -> int:
    """`100MB`, `64MiB`, `1g`, `2TiB` or a plain number of bytes."""
    number = text.strip()
    digits = number.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ/ ")
    unit = number[len(digits) :].strip().lower().removesuffix("/s")
    if unit not in _SIZE_UNITS or not digits.replace(".", "", 1).isdigit():
        raise ValueError(f"{text!r} is not a size such as 50MB, 64MiB or 1048576")
    return int(float(digits) * _SIZE_UNITS[unit])


_PRICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def parse_storage_prices(text: str) -> dict[str, float]:
    """`STANDARD=0.023,Hot=0.018`: a price per GiB-month for each storage class (tier),
    any currency; names as the store spells them (case matters). Empty: no prices."""
    prices: dict[str, float] = {}
    for entry in (item.strip() for item in text.split(",")):
        if not entry:
            continue
        name, sep, raw = (part.strip() for part in entry.partition("="))
        if not sep or not _PRICE_NAME.match(name):
            raise ValueError(
                f"entry {entry!r} is not NAME=PRICE with a storage class name such as "
                "STANDARD, STANDARD_IA or Hot (e.g. STANDARD=0.023,Hot=0.018)"
            )
        try:
            price = float(raw)
        except ValueError:
            price = math.nan
        if not math.isfinite(price) or price < 0:
            raise ValueError(
                f"the price of {name} ({raw!r}) must be a number of at least 0: "
                "the price of one GiB stored for a month, e.g. 0.023"
            )
        if name in prices:
            raise ValueError(f"{name} is priced twice")
        prices[name] = price
    return prices


# The GFS rules, warmest (kept for the shortest time) first: operations/gfs.py's PERIODS.
STORAGE_RULES = ("hourly", "daily", "weekly", "monthly", "yearly")


def parse_storage_classes(text: str) -> dict[str, str]:
    """`monthly=STANDARD_IA,yearly=DEEP_ARCHIVE` -> {rule: class}; ValueError names the fault.

    STORAGE_CLASSES: the storage class a backup kept only by that rule belongs in
    (workers/operations/tiers.py). Only its form is checked here; check_classes checks
    the names against the configured store's classes when the fleet is built.
    """
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        rule, _, storage_class = (piece.strip() for piece in item.partition("="))
        if rule not in STORAGE_RULES or not storage_class:
            raise ValueError(
                f"{item!r} is not `rule=CLASS` with a rule among {', '.join(STORAGE_RULES)}, "
                "e.g. monthly=STANDARD_IA,yearly=DEEP_ARCHIVE"
            )
        if rule in mapping:
            raise ValueError(f"rule {rule} is given twice")
        mapping[rule] = storage_class
    return mapping


def check_classes(
    mapping: Mapping[str, str],
    available: Sequence[str],
    store_kind: str,
    archive: Collection[str] = (),
) -> None:
    """Every class named must be one the store has, and colder rules must not name warmer
    classes (a yearly backup in a warmer class than a monthly one is a slip of the pen).

    An archive class (`archive`: read only after a rehydration) may only be the coldest
    class named: moving an archived object on to another class means rehydrating it
    first (S3 copies no GLACIER object that is not restored; Azure's only way out of
    Archive is a rehydration), which retention does not do.
    """
    if mapping and not available:
        raise ValueError(f"the {store_kind} store has a single storage class: leave it empty")
    for rule, storage_class in mapping.items():
        if storage_class not in available:
            raise ValueError(
                f"{rule}={storage_class}: the {store_kind} store's classes are "
                f"{', '.join(available)}"
            )
    named = [mapping[rule] for rule in STORAGE_RULES if rule in mapping]
    ordered = [available.index(storage_class) for storage_class in named]
    if ordered != sorted(ordered):
        raise ValueError("a colder rule names a warmer class than a warmer rule does")
    for storage_class in named:
        if storage_class in archive and storage_class != named[-1]:
            raise ValueError(
                f"{storage_class} is an archive class: only the coldest class named may be "
                f"one (an archived object moves on only after a rehydration), not {named[-1]}"
            )


def parse_file_mode(text: str) -> int:
    """An octal file mode with read/write bits only, the owner's included: `0600`, `640`."""
    if not re.fullmatch(r"0?[0-7]{3}", text.strip()):
        raise ValueError("must be an octal file mode such as 0600 or 0640")
    mode = int(text.strip(), 8)
    if mode & 0o111:
        raise ValueError("must not set execute bits: folders get them from the read bits")
    if mode & 0o600 != 0o600:
        raise ValueError("must let the owner read and write (0600 at least)")
    return mode


def check_growth_factor(value: float) -> None:
    """A size growth factor: above 1 (3.0: three times the median), or 0 for off."""
    if value != 0 and value <= 1:
        raise ValueError(
            "must be a factor above 1 (e.g. 3 for three times the median), or 0 for off"
        )

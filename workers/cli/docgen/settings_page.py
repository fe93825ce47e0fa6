"""docs/reference/settings.md: every variable Settings reads, from the model itself."""

import types
import typing
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo

from workers.cli.docgen.markdown import GENERATED_NOTE, cell, code, table
from workers.cli.fleet_env import ENV_FILE_VARIABLE
from workers.settings import Settings

INTRO = """\
---
hide:
  - toc
---

# Settings reference

{note}

Every setting is an environment variable, read and validated once at start; an invalid
value stops the process with a message naming the variable (and never echoing a secret).
An empty variable counts as unset (its default applies). Names are case-insensitive.
Sizes take units (`64MiB`, `2GB`) or bytes; durations `90s`, `10m`, `2h`, `1d` or seconds;
cron expressions are evaluated in UTC. A *secret* is never logged nor echoed, and is masked
in every message. The secondary store reads the same variables prefixed with `SECONDARY_`
(see `SECONDARY_OBJECT_STORE_LOCATION_TYPE`).

How the settings bound a backup's memory is in
[Memory and parts](../configuration/memory.md); the services file (which services, their
schedules and policies) in [The services file](../configuration/services-file.md).
"""

OTHERS_INTRO = """\
## Read by the `backfleet` command

These are not fleet settings: only the command line reads them.
"""

# Variables outside Settings: (name, type, default, meaning).
COMMAND_VARIABLES: tuple[tuple[str, str, str, str], ...] = (
    (
        ENV_FILE_VARIABLE,
        "path",
        "unset",
        "(the `backfleet` command only) the `var/fleet.env` that `backfleet up` writes, to "
        "reach that fleet from anywhere. Unset, `./var/fleet.env` is read when it exists, but "
        "not when the environment sets one of its settings itself (one fleet, never a mix)",
    ),
    (
        "BACKFLEET_FLOWER_PORT",
        "integer",
        "`5555`",
        "Flower's port under `backfleet up`",
    ),
)

# Field validators whose checks say more about a value's form than its Python type.
VALIDATED_FORMS = {
    "_valid_cron": "cron",
    "_valid_duration": "duration",
    "_size_with_unit": "size",
    "_valid_bandwidth": "bytes per second (`50MB`, `100MiB`)",
    "_redis_url": "Redis URL",
    "_catalog_url": "database URL",
    "_valid_file_mode": "octal file mode",
    "_valid_prices": "`CLASS=PRICE` list",
    "_webhook_url": "http(s) URL",
    "_valid_api_keys": "key list",
}
BYTE_UNITS = (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


def settings_page() -> str:
    lines = [INTRO.format(note=GENERATED_NOTE.format(source="workers/settings/"))]
    rows = [
        (
            cell(variables_of(name, field)),
            cell(type_of(name, field)),
            cell(default_of(name, field)),
            cell(field.description or ""),
        )
        for name, field in Settings.model_fields.items()
    ]
    lines.extend(table(("variable", "type", "default", "meaning"), rows))
    lines.append("")
    lines.append(OTHERS_INTRO)
    others = [(code(n), cell(t), cell(d), cell(m)) for n, t, d, m in COMMAND_VARIABLES]
    lines.extend(table(("variable", "type", "default", "meaning"), others))
    return "\n".join(lines) + "\n"


def variable_names(name: str, field: FieldInfo) -> list[str]:
    """The field's variable, then its aliases (`BROKER_URL`, `REDIS_URL`)."""
    names = [name.upper()]
    alias = field.validation_alias
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias] if alias else []
    names.extend(str(c).upper() for c in choices if str(c).upper() not in names)
    return names


def variables_of(name: str, field: FieldInfo) -> str:
    first, *aliases = (code(n) for n in variable_names(name, field))
    return f"{first} (alias {', '.join(aliases)})" if aliases else first


def _validators_of(name: str) -> list[str]:
    decorators = Settings.__pydantic_decorators__.field_validators
    return [key for key, d in decorators.items() if name in d.info.fields]


def type_of(name: str, field: FieldInfo) -> str:
    annotation, _ = _unwrap_optional(field.annotation)
    forms = [VALIDATED_FORMS[v] for v in _validators_of(name) if v in VALIDATED_FORMS]
    described = forms[0] if forms else _type_name(annotation)
    bounds = _bounds(field, sized=_is_size(name))
    if bounds:
        described += f", {bounds}"
    return described


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(_literal(v) for v in _literal_values(annotation))
    names = {bool: "boolean", int: "integer", float: "number", str: "text", Path: "path"}
    if annotation is SecretStr:
        return "secret"
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _literal_values(annotation: Any) -> list[object]:
    """A Literal's values, nested Literals (`Literal["", StoreType]`) flattened."""
    values: list[object] = []
    for arg in typing.get_args(annotation):
        values.extend(_literal_values(arg) if typing.get_origin(arg) is Literal else [arg])
    return values


def _literal(value: object) -> str:
    return "empty" if value == "" else code(str(value))


def _bounds(field: FieldInfo, *, sized: bool) -> str:
    """`1 to 100`, `≥ 60`, `> 0 and ≤ 120`: the range the field's constraints allow."""
    show = _with_unit if sized else str
    low: tuple[str, bool] | None = None  # (value, inclusive)
    high: tuple[str, bool] | None = None
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            low = (show(item.ge), True)
        elif isinstance(item, annotated_types.Gt):
            low = (show(item.gt), False)
        elif isinstance(item, annotated_types.Le):
            high = (show(item.le), True)
        elif isinstance(item, annotated_types.Lt):
            high = (show(item.lt), False)
    if low and high and low[1] and high[1]:
        return f"{low[0]} to {high[0]}"
    parts = []
    if low:
        parts.append(("≥ " if low[1] else "> ") + low[0])
    if high:
        parts.append(("≤ " if high[1] else "< ") + high[0])
    return " and ".join(parts)


def _is_size(name: str) -> bool:
    return "_size_with_unit" in _validators_of(name) or name.endswith("_bytes")


def _with_unit(value: object) -> str:
    """A byte count as `64 KiB` when it is a whole number of a unit, else as is."""
    if isinstance(value, int):
        for unit, size in BYTE_UNITS:
            if value >= size and value % size == 0:
                return f"{value // size} {unit}"
    return str(value)


def default_of(name: str, field: FieldInfo) -> str:
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value == "":
        return "empty"
    if isinstance(value, bool):
        return code("true" if value else "false")
    if isinstance(value, Path):
        text = str(value)
        return code(text if value.is_absolute() or text.startswith(".") else f"./{text}")
    if isinstance(value, float):
        return code(f"{value:g}")
    if isinstance(value, int) and _is_size(name) and _with_unit(value) != str(value):
        return f"{code(str(value))} ({_with_unit(value)})"
    return code(str(value))

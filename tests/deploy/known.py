"""What Backfleet reads from the environment, from the code and the settings reference (generated
from the code: docs/reference/settings.md), not a copy of them."""

import re
import tomllib
from collections.abc import Iterable
from pathlib import Path

from pydantic import AliasChoices

from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
K8S = COMPOSE / "k8s"

# Read by a library inside a Backfleet process rather than by Settings.
LIBRARY_VARIABLES = {
    "FLOWER_BASIC_AUTH": "Flower's --basic-auth (Flower reads FLOWER_* options)",
}


def settings_variables() -> set[str]:
    """Every variable Settings reads: each field's name in upper case, and its aliases."""
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        names.add(name.upper())
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias.upper())
    return names


SETTINGS_REFERENCE = ROOT / "docs" / "reference" / "settings.md"


def reference_rows() -> dict[str, str]:
    """Each variable named in the first column of the settings reference's tables -> the
    row's last cell (its meaning)."""
    rows: dict[str, str] = {}
    for line in SETTINGS_REFERENCE.read_text().splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]):
                rows[name] = cells[-1]
    return rows


def reference_settings_variables() -> set[str]:
    """The variables the settings reference documents."""
    return set(reference_rows())


def password_env_variables(services_files: Iterable[Path]) -> set[str]:
    """Variables a services file names with `password_env` (the worker reads them)."""
    names: set[str] = set()
    for path in services_files:
        config = tomllib.loads(path.read_text())
        tables = list(config.get("services", {}).values())
        for namespace in config.get("namespaces", {}).values():
            tables.extend(namespace.get("services", {}).values())
        names.update(table["password_env"] for table in tables if "password_env" in table)
    return names


def backfleet_reads(services_files: Iterable[Path]) -> set[str]:
    return (
        settings_variables()
        | reference_settings_variables()
        | password_env_variables(services_files)
        | set(LIBRARY_VARIABLES)
    )

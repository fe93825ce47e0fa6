"""What Backfleet reads from the environment, from the code and the README, not a copy of them."""

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


def readme_settings_variables() -> set[str]:
    """The variables named in the first column of the README's settings table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Settings", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
    return names


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
        | readme_settings_variables()
        | password_env_variables(services_files)
        | set(LIBRARY_VARIABLES)
    )

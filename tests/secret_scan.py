"""Which secrets a test gave a fleet, and whether any of them reached a log.

Worked out from the environment itself (independently of `Fleet.secrets()`,
which it checks): every SecretStr setting and its SECONDARY_ form, each key of
BACKFLEET_API_KEYS, the password of every URL in the environment or the
services file, and each service's `password_env` value.
"""

import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from workers.redact import url_password_forms
from workers.settings import Settings

MIN_LENGTH = 6  # shorter values would match by chance


def _secret_settings() -> set[str]:
    names = {
        name.upper()
        for name, field in Settings.model_fields.items()
        if SecretStr in getattr(field.annotation, "__args__", (field.annotation,))
    }
    return names | {f"SECONDARY_{name}" for name in names}


def given_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """{what it is: value} for every secret the environment hands a fleet."""
    found: dict[str, str] = {}
    for name in sorted(_secret_settings() & set(env)):
        if name.endswith("BACKFLEET_API_KEYS"):
            for index, entry in enumerate(env[name].split(",")):
                found[f"{name}[{index}]"] = entry.strip().split(":", 1)[0]
        else:
            found[name] = env[name]
            if "://" in env[name]:  # a webhook URL: its path carries the token
                found[f"the path of {name}"] = urlsplit(env[name]).path.rsplit("/", 1)[-1]
    for name, value in env.items():
        for form in url_password_forms(value if "://" in value else None):
            found[f"the password in {name}"] = form
    if config := env.get("BACKFLEET_CONFIG"):
        for where, spec in _services(Path(config)):
            for form in url_password_forms(spec.get("url")):
                found[f"the password in {where}.url"] = form
            if (variable := spec.get("password_env")) and env.get(variable):
                found[f"{where}.password_env"] = env[variable]
    return {what: value for what, value in found.items() if len(value) >= MIN_LENGTH}


def _services(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    if not path.is_file():
        return
    body = tomllib.loads(path.read_text())
    tables = [("services", body.get("services", {}))]
    tables += [
        (f"namespaces.{ns}.services", entry.get("services", {}))
        for ns, entry in body.get("namespaces", {}).items()
    ]
    for prefix, services in tables:
        for name, spec in services.items():
            yield f"{prefix}.{name}", spec


def leaks(secrets: Mapping[str, str], logs: Mapping[str, str]) -> list[str]:
    """'<what> in <log>' for each secret found in a log (never the value itself)."""
    return [
        f"{what} in {log}"
        for log, text in logs.items()
        for what, value in secrets.items()
        if re.search(re.escape(value), text)
    ]


def assert_no_secret_in_logs(env: Mapping[str, str], folder: Path) -> None:
    logs = {path.name: path.read_text(errors="replace") for path in sorted(folder.glob("*.log"))}
    found = leaks(given_secrets(env), logs)
    assert not found, f"secrets reached the fleet's logs: {', '.join(found)}"

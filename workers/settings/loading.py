"""Reading the settings: from the environment, with a prefix (the secondary store's), once
per process; a validation error becomes a ConfigError that names every bad variable."""

from functools import lru_cache

from pydantic import ValidationError

from workers.errors import ConfigError
from workers.settings.model import Settings


def describe_validation_error(error: ValidationError) -> str:
    """Name each bad variable and why, without echoing the value (it may be a secret)."""
    lines = []
    for item in error.errors():
        variable = str(item["loc"][0]).upper() if item["loc"] else "settings"
        reason = item["msg"].removeprefix("Value error, ")
        lines.append(f"invalid setting {variable}: {reason}")
    return "; ".join(lines)


def load_settings() -> Settings:
    """Read the environment now; raise ConfigError naming every bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def load_prefixed_settings(prefix: str) -> Settings:
    """Settings read from `<prefix><VARIABLE>` (the secondary store's); ConfigError if invalid."""
    try:
        return Settings(_env_prefix=prefix)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(f"{prefix}: {describe_validation_error(exc)}") from None


SECONDARY_PREFIX = "SECONDARY_"


def secondary_settings(settings: Settings) -> Settings | None:
    """The secondary store's settings (from SECONDARY_* variables), or None if there is none."""
    if not settings.secondary_object_store_location_type:
        return None
    return load_prefixed_settings(SECONDARY_PREFIX)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (tests call get_settings.cache_clear())."""
    return load_settings()

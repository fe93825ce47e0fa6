"""Where the fleet's parts meet: the broker, the catalog, the API's keys and listener,
the services file and the schedule of regular backups."""

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings

from workers.api_keys import ApiKey, configured_keys, parse_api_keys


class CoreSettings(BaseSettings):
    """Backfleet's own wiring (the Redis URLs are checked by Settings' Redis check)."""

    broker_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("BROKER_URL", "REDIS_URL"),
        description="Redis URL of the Celery broker: `redis://`, `rediss://` (TLS; `ssl_*` "
        "query options, `ssl_cert_reqs=required` or kombu's `CERT_REQUIRED`) or kombu's Unix "
        "socket form `redis+socket:///path?virtual_host=N`; every Redis client of the fleet "
        "(locks, checks, metrics, beat) reads all three",
    )
    result_backend_url: str | None = Field(
        default=None, description="Redis URL for task results (unset: the broker's)"
    )
    database_url: str = Field(
        default="sqlite:///./var/backfleet.db",
        description="the catalog: `sqlite:///path` or `postgresql://user[:pw]@host/db`",
    )
    backfleet_api_keys: SecretStr = Field(
        default=SecretStr(""),
        description="comma-separated `key`, `key:owner-email:customer` (every namespace, every "
        "role) or `key:owner-email:customer:namespaces:roles` (keys contain no `:`; see "
        "[Security model](../security.md#api-keys-and-scopes)); empty: every API call is "
        "refused",
    )
    backfleet_api_keys_file: Path | None = Field(
        default=None,
        description="a TOML file of SHA-256 hashes of keys with their scopes, so no key sits "
        "in the environment ([API keys and scopes](../security.md#api-keys-and-scopes)); read "
        "at start, used beside `BACKFLEET_API_KEYS`",
    )
    # Signs the catalog page's session cookies (api/session.py); unset: derived from the keys
    # of BACKFLEET_API_KEYS. Every API replica needs the same one.
    backfleet_ui_secret: SecretStr | None = Field(
        default=None,
        description="secret (32+ characters, e.g. `openssl rand -hex 32`) that signs the "
        "[catalog page](../api.md#the-catalog-page)'s session cookies; every API replica "
        "needs the same one. Unset: derived from the keys of `BACKFLEET_API_KEYS` (changing "
        "them signs everyone out); unset with only hashed keys (`BACKFLEET_API_KEYS_FILE`): "
        "the page's login form is off, the `Authorization` header still opens it",
    )
    # A restore from a namespace this fleet does not configure (another cluster's backups).
    backfleet_allow_unconfigured_source_namespaces: bool = Field(
        default=False,
        description="`ondemandrestore` (and `backfleet restore`) may read a `sourceNamespace` "
        "this fleet does not configure, e.g. another cluster's backups in a shared bucket; "
        "off, such a restore is 403 whatever the store holds",
    )
    backfleet_config: Path = Field(
        default=Path("./backfleet.toml"),
        description="[the services file](../configuration/services-file.md) (TOML)",
    )
    backfleet_namespace: str | None = Field(
        default=None,
        description="overrides the services file's `namespace` (unset: the file's, else `app`)",
    )
    regular_backup_schedule: str = Field(
        default="0 * * * *",
        description="cron (UTC) of the full backups `ENABLE_REGULAR_BACKUPS` schedules",
    )
    backfleet_api_host: str = Field(
        default="127.0.0.1", description="where `backfleet api` listens"
    )
    backfleet_api_port: Annotated[int, Field(ge=1, le=65535)] = Field(
        default=8080, description="the port `backfleet api` listens on"
    )

    @field_validator("backfleet_api_keys")
    @classmethod
    def _valid_api_keys(cls, value: SecretStr) -> SecretStr:
        parse_api_keys(value.get_secret_value())
        return value

    @field_validator("backfleet_api_keys_file")
    @classmethod
    def _valid_api_keys_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        raw = info.data.get("backfleet_api_keys")  # absent when it was itself invalid
        if raw is not None:
            configured_keys(raw.get_secret_value(), value)  # reads the file, checks repeats
        return value

    @field_validator("database_url")
    @classmethod
    def _catalog_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+", "postgres:")):
            raise ValueError("must be a sqlite:///… or postgresql://… URL")
        return value

    @field_validator("backfleet_ui_secret")
    @classmethod
    def _ui_secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 32:
            raise ValueError("must be at least 32 characters (e.g. `openssl rand -hex 32`)")
        return value

    @property
    def api_keys(self) -> list[ApiKey]:
        """The keys of BACKFLEET_API_KEYS and BACKFLEET_API_KEYS_FILE (read once per process)."""
        raw = self.backfleet_api_keys.get_secret_value()
        return list(configured_keys(raw, self.backfleet_api_keys_file))

    @property
    def results_url(self) -> str:
        return self.result_backend_url or self.broker_url

"""Storage you can see, budget and tier: prices, the budget, storage classes that follow
retention, rehydrating archived objects, and the secondary store."""

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from workers.settings.parsing import (
    StoreType,
    parse_storage_classes,
    parse_storage_prices,
)
from workers.timestamps import parse_duration


class StorageSettings(BaseSettings):
    """What is stored where, at what price (the primary store; the secondary's are prefixed)."""

    # Storage you can see and budget (workers/monitoring/storage.py): a price per GiB-month
    # per storage class, `STANDARD=0.023,Hot=0.018` (empty: no cost estimate), and the
    # stored bytes a namespace may reach before `storage.over_budget` (0: no budget).
    storage_prices: str = Field(
        default="",
        description="the price of one GiB stored for a month in each storage class (tier), "
        "any currency, for the cost estimate of `backfleet storage` and "
        "`backfleet_storage_monthly_cost` ([Storage and cost](../concepts/storage.md#storage-"
        "and-cost)): comma-separated `CLASS=PRICE`, class names as the store spells them, "
        "e.g. `STANDARD=0.023,STANDARD_IA=0.0125,GLACIER_IR=0.004,DEEP_ARCHIVE=0.00099,"
        "Hot=0.018,Cool=0.01,Cold=0.0036,Archive=0.002`; a tier without a price has no cost "
        "(and is named); empty: no cost shown",
    )
    storage_budget_bytes: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description="the stored bytes a namespace may reach before `storage.over_budget` is "
        "alerted, e.g. `500GiB`, `2TB` or bytes; a namespace's `storage_budget` in the "
        "services file wins; `0`: no budget",
    )
    # Storage tiers that follow retention (workers/operations/tiers.py): the class a backup
    # kept only by a GFS rule moves to, `monthly=STANDARD_IA,yearly=DEEP_ARCHIVE`; empty:
    # every object stays where it was written.
    storage_classes: str = Field(
        default="",
        description="the storage class a backup moves to once only that GFS rule keeps it "
        "([Storage tiers](../concepts/storage.md#storage-tiers)): comma-separated "
        "`rule=CLASS`, rules among `hourly`, `daily`, `weekly`, `monthly`, `yearly`, classes "
        "the store's own: S3 `STANDARD_IA`, `GLACIER_IR`, `GLACIER`, `DEEP_ARCHIVE`; Azure "
        "`Cool`, `Cold`, `Archive`; e.g. `monthly=STANDARD_IA,yearly=DEEP_ARCHIVE`. Checked "
        "when the fleet starts: a class the store does not have, a colder rule naming a "
        "warmer class, an archive class (`GLACIER`, `DEEP_ARCHIVE`, `Archive`) before the "
        "coldest one named, or any class on the local store, stops it with a message naming "
        "this setting. The primary store only; empty: every object stays where it was written",
    )
    # Reading an archived object (S3 GLACIER/DEEP_ARCHIVE, Azure Archive) first asks the
    # store to rehydrate it: S3's Glacier retrieval tier (Azure: Expedited is High
    # priority, the others Standard), the days S3 keeps the restored copy, and how long a
    # restore or drill waits for it.
    rehydration_tier: Literal["Standard", "Bulk", "Expedited"] = Field(
        default="Standard",
        description="how fast an archived object (S3 `GLACIER`/`DEEP_ARCHIVE`, Azure "
        "`Archive`) is brought back for a restore or a drill: S3's retrieval tier `Standard`, "
        "`Bulk` or `Expedited` (Deep Archive has no `Expedited`: `Standard` is asked); on "
        "Azure `Expedited` is High priority, the others Standard",
    )
    rehydration_days: Annotated[int, Field(ge=1, le=365)] = Field(
        default=2,
        description="the days S3 keeps the restored copy of an archived object (1-365), so a "
        "restore that gave up can be asked again without another retrieval",
    )
    rehydration_timeout: str = Field(
        default="48h",
        description="how long a restore or drill waits for its archived objects before it "
        "fails with a message saying so (the retrieval goes on): `48h`, `90m`, `2d` or "
        "seconds; never longer than nine tenths of `BACKUP_SOFT_TIME_LIMIT` ([Storage "
        "tiers](../concepts/storage.md#storage-tiers))",
    )
    # The secondary store's own settings are these same variables prefixed with SECONDARY_.
    secondary_object_store_location_type: Literal["", StoreType] = Field(
        default="",
        description="a secondary store (`local`, `s3`, `azure-blob-storage`) that gets a "
        "verified copy of every successful backup ([a second copy](../concepts/storage.md#a-"
        "second-copy)); empty: none. Its own settings are the variables above prefixed with "
        "`SECONDARY_` (`SECONDARY_AWS_S3_BUCKET_NAME`, `SECONDARY_AWS_ACCESS_KEY`, "
        "`SECONDARY_OBJECT_STORE_LOCATION_LOCAL`, `SECONDARY_RETENTION_KEEP_MONTHLY`…), with "
        "the same defaults",
    )
    secondary_copy_schedule: str = Field(
        default="*/15 * * * *",
        description="cron of the copy sweep to the secondary store (queue `maintenance`)",
    )

    @field_validator("storage_prices")
    @classmethod
    def _valid_prices(cls, value: str) -> str:
        parse_storage_prices(value)
        return value

    @field_validator("storage_classes")
    @classmethod
    def _valid_storage_classes(cls, value: str) -> str:
        parse_storage_classes(value)
        return value

    @property
    def prices(self) -> dict[str, float]:
        """STORAGE_PRICES: each storage class's price per GiB-month (empty: none set)."""
        return parse_storage_prices(self.storage_prices)

    @property
    def storage_class_map(self) -> dict[str, str]:
        """STORAGE_CLASSES: GFS rule -> the storage class its backups move to (empty: none)."""
        return parse_storage_classes(self.storage_classes)

    @property
    def rehydration_timeout_seconds(self) -> int:
        """REHYDRATION_TIMEOUT in seconds."""
        return parse_duration(self.rehydration_timeout)

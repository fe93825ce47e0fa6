"""Storage you can see and budget: stored bytes per namespace, service and tier, an
estimated monthly cost, and each namespace's budget.

The bytes come from the catalog (workers/catalog/storage.py says what is counted), not
from listing the store: one grouped query, cheap at every scrape. A tier is the storage
class an object is stored in (`STANDARD`, `Hot`, `local`…; today every object is in its
store's default class). Its cost is its bytes in GiB times its STORAGE_PRICES entry, a
price per GiB-month in whatever currency the prices are in; a tier without a price has
no cost (and is named, so a total is never silently short). A namespace's budget is its
`storage_budget` in the services file, else STORAGE_BUDGET_BYTES (0: none).

One function, `storage_report`, feeds `backfleet storage`, `/metrics` and the
`storage.over_budget` alert (workers/monitoring/notify.py).
"""

from dataclasses import dataclass

from workers.catalog import storage
from workers.catalog.db import session_scope
from workers.fleet import Fleet

GiB = 1024**3


def monthly_cost(size: int, price: float) -> float:
    """What `size` bytes cost for a month at `price` per GiB-month."""
    return size / GiB * price


@dataclass(frozen=True)
class ServiceStorage:
    service: str  # or storage.MANIFESTS, the manifests of the namespace's backups
    tier: str
    objects: int
    size: int  # stored bytes
    monthly_cost: float | None  # None: no price for its tier (or no prices at all)
    kind: str = storage.BACKUP  # or storage.WAL: the service's streamed WAL


@dataclass(frozen=True)
class TierStorage:
    tier: str
    objects: int
    size: int
    price: float | None  # per GiB-month; None: STORAGE_PRICES names none for it
    monthly_cost: float | None


@dataclass(frozen=True)
class NamespaceStorage:
    namespace: str
    services: list[ServiceStorage]  # by service, then tier
    tiers: list[TierStorage]  # by tier
    budget: int | None  # bytes; None: no budget
    budget_from: str  # where the budget comes from (`storage_budget` or the setting)
    priced: bool  # STORAGE_PRICES is set

    @property
    def size(self) -> int:
        return sum(tier.size for tier in self.tiers)

    @property
    def objects(self) -> int:
        return sum(tier.objects for tier in self.tiers)

    @property
    def monthly_cost(self) -> float | None:
        """The priced tiers' cost (None without STORAGE_PRICES); `unpriced` names the rest."""
        if not self.priced:
            return None
        return sum(tier.monthly_cost or 0.0 for tier in self.tiers)

    @property
    def unpriced(self) -> list[str]:
        """Tiers holding bytes that STORAGE_PRICES gives no price (when it is set)."""
        return [t.tier for t in self.tiers if self.priced and t.price is None and t.size]

    @property
    def over_budget(self) -> bool:
        return self.budget is not None and self.size > self.budget

    @property
    def budget_used(self) -> float | None:
        """Stored bytes as a fraction of the budget (1.0: all of it)."""
        return None if self.budget is None else self.size / self.budget


def storage_report(fleet: Fleet, *, namespace: str | None = None) -> list[NamespaceStorage]:
    """Every namespace the fleet configures or the catalog holds backups of (or only
    `namespace`), in name order, each with its services' and tiers' stored bytes."""
    default_tier = fleet.store.default_storage_class
    prices = fleet.settings.prices
    with session_scope(fleet.settings.database_url) as session:
        rows = storage.stored_bytes(session, namespace=namespace)
    names = {row.namespace for row in rows}
    names |= {namespace} if namespace is not None else set(fleet.config.namespaces)
    report = []
    for name in sorted(names):
        # Rows of one service in one tier may come apart (None and the default): merged.
        merged: dict[tuple[str, str, str], list[int]] = {}
        for row in rows:
            if row.namespace == name:
                where = (row.service, row.kind, row.tier or default_tier)
                totals = merged.setdefault(where, [0, 0])
                totals[0] += row.objects
                totals[1] += row.size
        services = [
            ServiceStorage(
                service, tier, objects, size, _cost(size, prices.get(tier), prices), kind
            )
            for (service, kind, tier), (objects, size) in sorted(merged.items())
        ]
        tiers = []
        for tier in sorted({item.tier for item in services}):
            mine = [item for item in services if item.tier == tier]
            size = sum(item.size for item in mine)
            price = prices.get(tier)
            objects = sum(item.objects for item in mine)
            tiers.append(TierStorage(tier, objects, size, price, _cost(size, price, prices)))
        own = name in fleet.config.storage_budgets
        report.append(
            NamespaceStorage(
                namespace=name,
                services=services,
                tiers=tiers,
                budget=fleet.config.storage_budget_of(name, fleet.settings),
                budget_from="storage_budget" if own else "STORAGE_BUDGET_BYTES",
                priced=bool(prices),
            )
        )
    return report


def _cost(size: int, price: float | None, prices: dict[str, float]) -> float | None:
    return None if price is None or not prices else monthly_cost(size, price)

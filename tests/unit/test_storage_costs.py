"""Storage you can see and budget: prices and budgets parsed, bytes per tier and their cost
from catalog rows (a SQLite catalog; the integration tests take real backups)."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import FAILED, SUCCESS, Artifact, Backup
from workers.catalog.storage import MANIFESTS
from workers.cli.storage import storage_json, storage_table
from workers.errors import ConfigError
from workers.fleet import Fleet
from workers.monitoring.storage import monthly_cost, storage_report
from workers.services_config import parse_fleet_config
from workers.settings import Settings, load_settings, parse_storage_prices
from workers.stores.memory import MemoryStore

GiB = 1024**3
PRICES = "STANDARD=0.023,STANDARD_IA=0.0125,GLACIER_IR=0.004,DEEP_ARCHIVE=0.00099,Hot=0.018"
SERVICES = """
[namespaces.app]
storage_budget = "12GiB"
[namespaces.app.services.db]
kind = "sqlite"
path = "/srv/db.sqlite"
[namespaces.quiet.services.files]
kind = "directory"
path = "/srv/files"
"""


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


def test_prices_are_parsed_per_storage_class() -> None:
    prices = parse_storage_prices(
        "STANDARD=0.023,STANDARD_IA=0.0125,GLACIER_IR=0.004,DEEP_ARCHIVE=0.00099,"
        "Hot=0.018,Cool=0.01,Cold=0.0036,Archive=0.002"
    )
    assert prices["DEEP_ARCHIVE"] == 0.00099 and prices["Cool"] == 0.01 and len(prices) == 8
    assert parse_storage_prices("") == {} and parse_storage_prices(" local = 0 , ") == {"local": 0}
    assert Settings().prices == {}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("STANDARD", "is not NAME=PRICE"),
        ("STANDARD:0.023", "is not NAME=PRICE"),
        ("=0.1", "is not NAME=PRICE"),
        ("STANDARD=cheap", "must be a number of at least 0"),
        ("STANDARD=-0.01", "must be a number of at least 0"),
        ("STANDARD=inf", "must be a number of at least 0"),
        ("Hot=0.01,Hot=0.02", "Hot is priced twice"),
    ],
)
def test_a_bad_price_list_stops_the_start_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, value: str, reason: str
) -> None:
    monkeypatch.setenv("STORAGE_PRICES", value)
    with pytest.raises(ConfigError, match=f"invalid setting STORAGE_PRICES: .*{reason}"):
        load_settings()


def test_the_budget_takes_units_and_a_namespace_may_set_its_own() -> None:
    assert Settings(storage_budget_bytes="500GiB").storage_budget_bytes == 500 * GiB
    assert Settings(storage_budget_bytes="2TB").storage_budget_bytes == 2 * 1000**4
    assert Settings().storage_budget_bytes == 0
    config = parse_fleet_config(SERVICES)
    fleet_wide = Settings(storage_budget_bytes="1GiB")
    assert config.storage_budget_of("app", fleet_wide) == 12 * GiB  # its own wins
    assert config.storage_budget_of("quiet", fleet_wide) == GiB
    assert config.storage_budget_of("quiet", Settings()) is None  # 0: no budget
    off = parse_fleet_config(SERVICES.replace('"12GiB"', "0"))
    assert off.storage_budget_of("app", fleet_wide) is None  # 0 turns it off for one namespace
    single = parse_fleet_config(
        'storage_budget = "3MiB"\n[services.db]\nkind = "sqlite"\npath = "/srv/db.sqlite"\n'
    )
    assert single.storage_budget_of("app", Settings()) == 3 * 1024**2


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('storage_budget = "lots"\n' + SERVICES.split("\n", 1)[1], "not a size"),
        ('storage_budget = "1GiB"\n' + SERVICES, "belongs in each \\[namespaces.<ns>\\] table"),
        (SERVICES.replace('"12GiB"', "-5"), "greater than or equal to 0"),
    ],
)
def test_a_bad_storage_budget_in_the_services_file_is_refused(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_fleet_config(text)


def test_monthly_cost_is_gib_months_times_the_price() -> None:
    assert monthly_cost(10 * GiB, 0.023) == pytest.approx(0.23)
    assert monthly_cost(GiB // 2, 0.018) == pytest.approx(0.009)
    assert monthly_cost(0, 1.0) == 0


def _fleet(tmp_path: Path, **settings: Any) -> Fleet:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    upgrade_catalog(url)
    store = MemoryStore()
    store.default_storage_class = "STANDARD"  # type: ignore[misc]  # as S3's
    config = parse_fleet_config(SERVICES)
    return Fleet(settings=Settings(database_url=url, **settings), config=config, store=store)


def _backup(
    fleet: Fleet, stamp: str, status: str, artifacts: list[tuple[str, int, str | None, str]]
) -> None:
    """A backup row with artifacts (service, size, storage class, status)."""
    with session_scope(fleet.settings.database_url) as session:
        backup = Backup(
            namespace="app",
            timestamp=stamp,
            status=status,
            services=sorted({service for service, *_ in artifacts}),
            manifest_size=2048 if status == SUCCESS else None,
        )
        session.add(backup)
        for number, (service, size, tier, state) in enumerate(artifacts, start=1):
            backup.artifacts.append(
                Artifact(
                    service=service,
                    volume=number,
                    kind="sqlite",
                    key=f"app/{stamp}/{service}.{number}",
                    format="sqlite",
                    compression="zstd",
                    status=state,
                    size=size,
                    storage_class=tier,
                )
            )


def _catalog(fleet: Fleet) -> None:
    _backup(  # recorded before the storage_class column: the store's default class
        fleet, "2023-02-01t00-00-00", SUCCESS, [("db", 4 * GiB, None, SUCCESS)]
    )
    _backup(fleet, "2023-02-02t00-00-00", SUCCESS, [("db", 6 * GiB, "STANDARD", SUCCESS)])
    _backup(  # a later tier (GFS storage classes) and one without a price
        fleet,
        "2023-01-01t00-00-00",
        SUCCESS,
        [("db", 2 * GiB, "GLACIER_IR", SUCCESS), ("files", GiB, "ONEZONE_IA", SUCCESS)],
    )
    _backup(  # not counted: a Failed backup, and a Failed artifact
        fleet, "2023-02-03t00-00-00", FAILED, [("db", 100 * GiB, "STANDARD", SUCCESS)]
    )
    _backup(fleet, "2023-02-04t00-00-00", SUCCESS, [("db", 50 * GiB, "STANDARD", FAILED)])


def test_stored_bytes_per_service_and_tier_with_their_cost(tmp_path: Path) -> None:
    fleet = _fleet(tmp_path, storage_prices=PRICES)
    _catalog(fleet)
    app, quiet = storage_report(fleet)
    assert quiet.namespace == "quiet" and quiet.size == 0 and quiet.budget is None
    rows = [(r.service, r.tier, r.objects, r.size) for r in app.services]
    assert rows == [
        ("db", "GLACIER_IR", 1, 2 * GiB),
        ("db", "STANDARD", 2, 10 * GiB),  # the row without a class is the default's
        ("files", "ONEZONE_IA", 1, GiB),
        (MANIFESTS, "STANDARD", 4, 4 * 2048),  # every successful backup's manifest
    ]
    standard = next(t for t in app.tiers if t.tier == "STANDARD")
    assert standard.size == 10 * GiB + 8192 and standard.price == 0.023
    assert standard.monthly_cost == pytest.approx((10 * GiB + 8192) / GiB * 0.023)
    glacier = next(t for t in app.tiers if t.tier == "GLACIER_IR")
    assert glacier.monthly_cost == pytest.approx(2 * 0.004)
    assert app.unpriced == ["ONEZONE_IA"]  # counted in bytes, named as having no price
    assert app.monthly_cost == pytest.approx(standard.monthly_cost + 0.008)
    assert app.size == 13 * GiB + 8192 and app.objects == 8
    assert app.budget == 12 * GiB and app.budget_from == "storage_budget" and app.over_budget

    (only,) = storage_report(fleet, namespace="app")
    assert only == app
    (data,) = storage_json([app])
    assert data["storedBytes"] == app.size and data["overBudget"] is True
    assert data["unpricedTiers"] == ["ONEZONE_IA"] and data["budgetFrom"] == "storage_budget"
    assert {"tier": "GLACIER_IR", "objects": 1, "storedBytes": 2 * GiB} | {
        "pricePerGiBMonth": 0.004,
        "monthlyCost": pytest.approx(0.008),
    } in data["tiers"]
    lines = storage_table([app])
    assert any(line.split()[:4] == ["app", "db", "backup", "GLACIER_IR"] for line in lines)
    total = next(line for line in lines if line.split()[1] == "total")
    assert "OVER BUDGET: 108% of budget 12.0 GiB" in total
    assert "no price in STORAGE_PRICES for: ONEZONE_IA" in lines[-1]


def test_without_prices_there_is_no_cost(tmp_path: Path) -> None:
    fleet = _fleet(tmp_path)
    _catalog(fleet)
    app, _ = storage_report(fleet)
    assert app.monthly_cost is None and app.unpriced == []
    assert all(t.monthly_cost is None and t.price is None for t in app.tiers)
    assert all(row.monthly_cost is None for row in app.services)
    assert storage_json([app])[0]["monthlyCost"] is None
    assert all(line.rstrip().endswith("-") for line in storage_table([app])[1:-1])

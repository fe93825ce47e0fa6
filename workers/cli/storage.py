"""`backfleet storage`: stored bytes per namespace, service and tier, an estimated monthly
cost, and each namespace's budget, as a table or JSON.

The rows come from workers.monitoring.storage.storage_report (the same as `/metrics` and
the `storage.over_budget` alert); `storage_table` and `storage_json` print them, for this
command and for any report that shows storage beside other things.
"""

import json
from typing import TYPE_CHECKING, Any

import click

from workers.cli.commands import main

if TYPE_CHECKING:
    from workers.monitoring.storage import NamespaceStorage

_HEAD = (
    f"{'NAMESPACE':<16} {'SERVICE':<16} {'KIND':<6} {'TIER':<14} {'OBJECTS':>8} "
    f"{'STORED':>11}  COST/MONTH"
)


def _cost(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value >= 1 else f"{value:.4f}"


def _budget(item: "NamespaceStorage") -> str:
    from workers.monitoring.sizes import format_bytes

    if item.budget is None:
        return "no budget"
    used = f"{item.budget_used or 0.0:.0%} of budget {format_bytes(item.budget)}"
    return f"OVER BUDGET: {used}" if item.over_budget else used


def storage_table(report: "list[NamespaceStorage]") -> list[str]:
    """One line per namespace, service, kind (`backup`, `wal`) and tier, then each
    namespace's total, budget and the tiers that have no price."""
    from workers.monitoring.sizes import format_bytes

    lines = [_HEAD]
    for item in report:
        name = item.namespace
        for row in item.services:
            lines.append(
                f"{name:<16} {row.service:<16} {row.kind:<6} {row.tier:<14} {row.objects:>8} "
                f"{format_bytes(row.size):>11}  {_cost(row.monthly_cost)}"
            )
        lines.append(
            f"{name:<16} {'total':<16} {'':<6} {'':<14} {item.objects:>8} "
            f"{format_bytes(item.size):>11}  {_cost(item.monthly_cost):<10}  {_budget(item)}"
        )
        if item.unpriced:
            lines.append(f"{'':<16} no price in STORAGE_PRICES for: {', '.join(item.unpriced)}")
    return lines


def storage_json(report: "list[NamespaceStorage]") -> list[dict[str, Any]]:
    """The report as JSON-ready dicts (camelCase keys, like the API's)."""
    return [
        {
            "namespace": item.namespace,
            "storedBytes": item.size,
            "objects": item.objects,
            "monthlyCost": item.monthly_cost,
            "unpricedTiers": item.unpriced,
            "budgetBytes": item.budget,
            "budgetFrom": item.budget_from if item.budget is not None else None,
            "budgetUsed": item.budget_used,
            "overBudget": item.over_budget,
            "tiers": [
                {
                    "tier": tier.tier,
                    "objects": tier.objects,
                    "storedBytes": tier.size,
                    "pricePerGiBMonth": tier.price,
                    "monthlyCost": tier.monthly_cost,
                }
                for tier in item.tiers
            ],
            "services": [
                {
                    "service": row.service,
                    "kind": row.kind,
                    "tier": row.tier,
                    "objects": row.objects,
                    "storedBytes": row.size,
                    "monthlyCost": row.monthly_cost,
                }
                for row in item.services
            ],
        }
        for item in report
    ]


@main.command()
@click.option("--namespace", default=None, help="Only this namespace [every one].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def storage(namespace: str | None, as_json: bool) -> None:
    """Stored bytes per namespace, service, kind (backups, streamed WAL) and tier (from the
    catalog), the estimated monthly cost at STORAGE_PRICES, and each namespace's storage
    budget."""
    from workers.fleet import current_fleet
    from workers.monitoring.storage import storage_report

    report = storage_report(current_fleet(), namespace=namespace)
    if as_json:
        click.echo(json.dumps(storage_json(report), indent=2))
        return
    for line in storage_table(report):
        click.echo(line)

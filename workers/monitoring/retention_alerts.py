"""`retention.failed`: a retention pass that could not do all it planned.

A deletion, a move to a colder class or an Object Lock extension that failed is logged by
the pass, but a log line every night is easy to miss while, say, a missing
`s3:PutObjectRetention` permission lets seven years of monthly backups lose their
write-once protection. So the pass opens one alert per namespace (and store) while
anything fails, naming what and why, and resolves it at the first pass that does
everything it planned.
"""

from collections.abc import Mapping

from workers.monitoring.alert_messages import AlertEvent
from workers.monitoring.alerts import Alerter, safely

EVENT = "retention.failed"
SHOWN = 3  # failures named in the alert's text; the log has them all


def report_retention(
    alerter: Alerter, *, namespace: str, store: str, failures: Mapping[str, str]
) -> None:
    """Open (or keep open) the namespace's alert when `failures` (timestamp -> why) is not
    empty, else resolve it."""
    condition = f"{EVENT}:{namespace}" if store == "primary" else f"{EVENT}:{store}:{namespace}"
    if not failures:
        safely(lambda: alerter.resolve(condition), condition)
        return
    named = "; ".join(f"{stamp}: {why}" for stamp, why in sorted(failures.items())[:SHOWN])
    more = f" (and {len(failures) - SHOWN} more)" if len(failures) > SHOWN else ""
    where = "" if store == "primary" else f" on the {store} store"
    text = (
        f"Backfleet: retention of namespace {namespace}{where} could not do "
        f"{len(failures)} of the things it planned: {named}{more}"
    )
    alert = AlertEvent(event=EVENT, text=text, namespace=namespace)
    safely(lambda: alerter.open(condition, alert), condition)

"""What Flower shows as a task's arguments: its namespace and timestamp, never a secret.

Every task message is labelled as it is published (by the API, the CLI or
beat): its `kwargsrepr` header, which workers report to Flower, is rebuilt
from a short list of known, harmless keyword arguments, so an operator can
search Flower for a namespace or a backup timestamp, and whatever else a task
may one day take never shows. A job that has no backup timestamp yet (a
scheduled backup takes its own when it starts) shows when it was sent.

Celery calls `label_for_flower` as its before_task_publish signal (tasks/app.py connects
it); the CLI's sender, which publishes without Celery (tasks/messages.py), calls it too.
No Celery import here, so that sender does not load Celery for it.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from workers.redact import redact
from workers.timestamps import format_timestamp, utcnow

# Shown in this order; anything else a task takes is left out.
SHOWN = ("namespace", "source_namespace", "timestamp", "restore_id", "only_config")
EVERY_NAMESPACE = "*"


def task_label(kwargs: Mapping[str, Any], *, sent_at: datetime) -> str:
    """The kwargsrepr of a task: e.g. {'namespace': 'app', 'timestamp': '2023-02-02t17-03-15'}."""
    shown: dict[str, Any] = {key: kwargs[key] for key in SHOWN if kwargs.get(key) not in (None, "")}
    shown.setdefault("namespace", EVERY_NAMESPACE)
    if "timestamp" not in shown:
        shown["sent_at"] = format_timestamp(sent_at)
    return redact(repr(shown))


def label_for_flower(body: Any = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Rewrite the message's argsrepr/kwargsrepr in place (Celery's task protocol 2)."""
    if headers is None or "task" not in headers:
        return
    kwargs = body[1] if isinstance(body, tuple | list) and len(body) >= 2 else {}
    headers["argsrepr"] = "()"
    headers["kwargsrepr"] = task_label(kwargs if isinstance(kwargs, dict) else {}, sent_at=utcnow())

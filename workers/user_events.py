"""System events for the audit trail: stub; replaced by issue 5 at merge."""

import logging
from collections.abc import Mapping

log = logging.getLogger(__name__)


def record_system_event(
    *,
    namespace: str,
    name: str,
    params: Mapping[str, str] | None = None,
    payload: str = "",
    response_code: int = 200,
    user_email: str = "backfleet",
    customer_name: str = "",
) -> None:
    """stub; replaced by issue 5 at merge. Never raises."""
    log.debug("system event %s in %s: %s", name, namespace, dict(params or {}))

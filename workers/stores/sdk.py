"""Calling a cloud SDK: its failures mapped to Backfleet's errors, retried when transient."""

from collections.abc import Callable
from typing import TypeVar

from pydantic import SecretStr

from workers.errors import BackfleetError
from workers.retry import RetryPolicy, call_with_retries

T = TypeVar("T")
# (the SDK's exception, what was being done) -> our error; None means "a bug: let it raise"
ErrorMapper = Callable[[BaseException, str], BackfleetError | None]


def call_once(what: str, operation: Callable[[], T], map_error: ErrorMapper) -> T:
    try:
        return operation()
    except Exception as exc:
        mapped = map_error(exc, what)
        if mapped is None:
            raise
        raise mapped from None  # the SDK's exception may quote request details


def call_retried(
    what: str, operation: Callable[[], T], map_error: ErrorMapper, policy: RetryPolicy
) -> T:
    return call_with_retries(
        lambda: call_once(what, operation, map_error), policy=policy, what=what
    )


def secret_value(value: SecretStr | None) -> str | None:
    """The secret's text, or None when it is unset or empty."""
    if value is None:
        return None
    return value.get_secret_value() or None

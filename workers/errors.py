"""One root exception; transient errors may be retried, permanent ones never are.

Messages are written for the operator and must never carry a secret.
"""


class BackfleetError(Exception):
    """Root of every error Backfleet raises on purpose."""


class TransientError(BackfleetError):
    """May succeed if tried again (a timeout, a reset connection, a busy server)."""


class UnreachableError(TransientError):
    """A server Backfleet needs (the broker, the catalog, the store) did not answer; the
    message names it, where it was looked for (redacted) and the setting that says so."""


class PermanentError(BackfleetError):
    """Will fail again the same way until a setting or the data is fixed."""


class ConfigError(PermanentError):
    """A setting or the services file is wrong; the message names what to fix."""


class NotFoundError(PermanentError):
    """A backup, restore or object that was asked for does not exist."""


class ConflictError(PermanentError):
    """The request collides with work in progress (e.g. a running backup)."""

    def __init__(self, message: str, *, timestamp: str | None = None) -> None:
        super().__init__(message)
        self.timestamp = timestamp


class IntegrityError(PermanentError):
    """Stored bytes do not match what the manifest recorded."""


class SourceError(PermanentError):
    """A dump or restore tool failed; the message is its (redacted) complaint."""


class InvalidRequestError(PermanentError):
    """The caller asked for something that cannot be done as asked (HTTP 422)."""


class ForbiddenError(PermanentError):
    """The caller may not do this (HTTP 403): outside its key's scope, or refused by policy."""


def reason_of(exc: BaseException) -> str:
    """What went wrong, for an operator: our own errors speak for themselves, others get
    their type named (a bare "timed out" says little). Callers redact it before it leaves."""
    return str(exc) if isinstance(exc, BackfleetError) else f"{type(exc).__name__}: {exc}"

"""reason_of: the one way an exception becomes an operator-readable reason."""

from workers.errors import ConfigError, TransientError, reason_of


def test_own_errors_speak_for_themselves() -> None:
    assert reason_of(ConfigError("BACKUP_X is not set")) == "BACKUP_X is not set"
    assert reason_of(TransientError("store busy")) == "store busy"


def test_foreign_errors_are_named() -> None:
    assert reason_of(TimeoutError("timed out")) == "TimeoutError: timed out"
    assert reason_of(KeyError("k")) == "KeyError: 'k'"

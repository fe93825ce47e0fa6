"""A verification holds a reading mark on the backup it reads (second review, finding 6):
retention then neither deletes nor moves it to another storage class under the reader."""

from pathlib import Path
from typing import Any

import pytest

import workers.operations.verify as verify_module
from tests.health_fleet import make_fleet, take_backup
from workers.catalog.db import dispose_engines
from workers.operations.locks import backups_being_read
from workers.operations.verify import verify_backup

pytestmark = pytest.mark.integration


def test_a_verification_marks_its_backup_as_being_read(
    tmp_path: Path, redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_URL", redis_server.url)  # the marks live in Redis
    fleet = make_fleet(tmp_path)
    stamp = take_backup(fleet)
    seen: list[set[str]] = []
    real = verify_module.check_backup

    def check_and_look(*args: Any, **kwargs: Any) -> Any:
        seen.append(backups_being_read(fleet.settings, "app"))
        return real(*args, **kwargs)

    monkeypatch.setattr(verify_module, "check_backup", check_and_look)
    try:
        (result,) = verify_backup(fleet, namespace="app", timestamp=stamp)
    finally:
        dispose_engines()
    assert result.error is None
    assert seen == [{stamp}]  # marked while it was read
    assert backups_being_read(fleet.settings, "app") == set()  # and not after

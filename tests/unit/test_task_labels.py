"""Flower shows each task's namespace and timestamp, and nothing else of its arguments."""

from datetime import UTC, datetime

from tasks.task_labels import task_label

SENT = datetime(2026, 11, 22, 0, 0, 5, tzinfo=UTC)


def test_an_on_demand_backup_shows_its_namespace_and_timestamp() -> None:
    kwargs = {"namespace": "app", "timestamp": "2026-11-22t00-00-00"}
    assert task_label(kwargs, sent_at=SENT) == str(kwargs)


def test_a_restore_shows_where_from_and_into() -> None:
    label = task_label(
        {
            "restore_id": 7,
            "namespace": "b",
            "source_namespace": "a",
            "timestamp": "2026-11-21t23-00-00",
        },
        sent_at=SENT,
    )
    assert label == (
        "{'namespace': 'b', 'source_namespace': 'a', 'timestamp': '2026-11-21t23-00-00', "
        "'restore_id': 7}"
    )


def test_a_job_without_a_timestamp_shows_when_it_was_sent() -> None:
    assert task_label({"namespace": "app"}, sent_at=SENT) == (
        "{'namespace': 'app', 'sent_at': '2026-11-22t00-00-05'}"
    )
    assert task_label({}, sent_at=SENT) == "{'namespace': '*', 'sent_at': '2026-11-22t00-00-05'}"


def test_nothing_but_the_known_labels_is_ever_shown() -> None:
    label = task_label(
        {"namespace": "app", "password": "hunter2-xyz", "url": "postgresql://u:pw-123@db/app"},
        sent_at=SENT,
    )
    assert "hunter2" not in label and "pw-123" not in label and "url" not in label

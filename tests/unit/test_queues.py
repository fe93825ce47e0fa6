"""workers.queues is the one task → queue table: the app routes by it, beat and enqueue read it."""

from pathlib import Path

from beat_schedule import schedule_entries
from tasks.app import TASK_ROUTES, app
from workers.queues import QUEUES, TASK_QUEUES, queue_of
from workers.services_config import parse_fleet_config
from workers.settings import Settings

DESIGN_TASKS = {  # DESIGN.md's task names: users call them, they never change
    "tasks.backup.run_backup",
    "tasks.restore.run_restore",
    "tasks.audit.flush_user_events",
    "tasks.audit.purge_user_events",
    "tasks.verify.verify_backups",
    "tasks.verify.test_restore",
    "tasks.retention.apply_retention",
    "tasks.retention.abort_stale_uploads",
}


def test_every_task_the_app_registers_has_a_queue_in_the_table_and_no_other() -> None:
    app.loader.import_default_modules()
    registered = {name for name in app.tasks if not name.startswith("celery.")}
    assert registered == set(TASK_QUEUES)
    assert registered >= DESIGN_TASKS
    assert set(TASK_QUEUES.values()) <= set(QUEUES)


def test_the_app_routes_each_task_to_its_table_queue() -> None:
    for task, queue in TASK_QUEUES.items():
        assert app.amqp.router.route({}, task)["queue"].name == queue
    assert {task: {"queue": queue} for task, queue in TASK_QUEUES.items()} == TASK_ROUTES


def test_beat_entries_take_their_queue_from_the_table(tmp_path: Path) -> None:
    settings = Settings(
        enable_regular_backups=True,
        enable_user_events=True,
        secondary_object_store_location_type="local",
        secondary_object_store_location_local=str(tmp_path),
    )
    config = parse_fleet_config('[namespaces.a.services.db]\nkind = "sqlite"\npath = "/a.db"\n')
    entries = schedule_entries(settings, config)
    scheduled = {e.task for e in entries}
    assert scheduled <= set(TASK_QUEUES)
    assert {"tasks.replicate.copy_to_secondary", "tasks.audit.purge_user_events"} <= scheduled
    assert all(e.queue == queue_of(e.task) for e in entries)

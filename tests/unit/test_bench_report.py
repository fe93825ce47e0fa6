"""bench/report.py rewrites RESULTS.md's generated part and keeps what follows it."""

from pathlib import Path

import pytest

from bench import report


def test_a_new_run_keeps_the_notes_below_the_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results.json"
    results.write_text("{}")
    target = tmp_path / "RESULTS.md"
    figures = iter(["# run 1\n", "# run 2\n"])
    monkeypatch.setattr(report, "render", lambda _results: next(figures))

    report.write(results, target)
    assert target.read_text() == "# run 1\n\n" + report.KEEP + "\n"

    notes = "## Notes by hand\n\n<!-- audit-bench:start -->\naudit\n<!-- audit-bench:end -->\n"
    target.write_text(target.read_text() + notes)
    report.write(results, target)
    assert target.read_text() == "# run 2\n\n" + report.KEEP + "\n" + notes


def _run(wall: float, inner: float, cpu: float, cpu_ready: float) -> dict[str, object]:
    mbps = 1000 / wall  # 1000 MB of input
    return {
        "ok": True,
        "wall_s": wall,
        "mbps": mbps,
        "cpu_s": cpu,
        "inner_s": inner,
        "cpu_ready_s": cpu_ready,
        "worker_peak_rss": 100 << 20,
    }


def _backup(backfleet_runs: list[dict[str, object]]) -> dict[str, object]:
    peer = {"ok": True, "wall_s": 5.0, "mbps": 200.0, "cpu_s": 5.0}
    return {
        "id": "dir-1G-backup",
        "kind": "dir-backup",
        "contenders": [
            {"id": "aws", "label": "aws", "role": "peer", "runs": [peer]},
            {"id": "backfleet", "label": "Backfleet", "role": "backfleet", "runs": backfleet_runs},
        ],
    }


def test_a_running_worker_row_times_the_backup_without_the_process_start() -> None:
    scenario = report.with_running_worker(_backup([_run(5.0, 4.0, 4.0, 0.5)]))
    warm = next(c for c in scenario["contenders"] if c["id"] == report.WARM)
    summary = report.summarize(warm)
    assert summary.wall == (4.0, 4.0, 4.0) and summary.mbps == (250.0, 250.0, 250.0)
    assert summary.cpu == 3.5
    targets = report.evaluate([scenario], provisional=False)
    verdicts = {t.text.split(" ≥")[0]: (t.measured, t.verdict) for t in targets if "1.25" in t.text}
    assert verdicts == {
        "Backfleet runner as a new process": ("1.00x", "FAIL"),
        "Backfleet runner in a running worker": ("1.25x", "PASS"),
    }


def _celery_run(wall: float, queue: float, tree_pss_mib: int) -> dict[str, object]:
    return {
        "ok": True,
        "wall_s": wall,
        "mbps": 1000 / wall,
        "cpu_s": 4.0,
        "client_cpu_s": 0.5,
        "worker_cpu_s": 3.5,
        "queue_s": queue,
        "worker_peak_rss": 120 << 20,
        "child_peak_private": 60 << 20,
        "child_peak_pss": 90 << 20,
        "parent_rss": 100 << 20,
        "worker_tree_peak_pss": tree_pss_mib << 20,
    }


def test_the_celery_path_is_the_headline_and_its_whole_worker_memory_is_judged() -> None:
    scenario = _backup([_run(5.0, 4.0, 4.0, 0.5)])
    celery = {"id": report.CELERY, "label": "Celery", "role": "backfleet", "runs": []}
    celery["runs"] = [_celery_run(4.0, 3.5, 140), _celery_run(3.9, 3.4, 151)]
    scenario["contenders"].insert(0, celery)  # type: ignore[attr-defined]

    targets = report.evaluate([report.with_running_worker(scenario)], provisional=False)

    first = targets[0]
    assert first.text.startswith(
        "Backfleet through a Celery worker (backfleet backup --wait) ≥ 1.25"
    )
    assert (first.measured, first.verdict) == ("1.27x", "PASS")  # 1000/3.95 MB/s over 200
    memory = next(t for t in targets if "PSS" in t.text)
    assert (memory.measured, memory.verdict, memory.row) == ("151 MiB", "FAIL", report.CELERY)


def test_results_without_the_runner_s_own_timing_get_no_running_worker_row() -> None:
    scenario = _backup([{"ok": True, "wall_s": 5.0, "mbps": 200.0, "cpu_s": 4.0}])
    assert report.with_running_worker(scenario) == scenario


def test_the_celery_section_splits_the_time_and_shows_the_memory_peaks() -> None:
    scenario = _backup([_run(5.0, 4.0, 4.0, 0.5)])
    celery = {"id": report.CELERY, "label": "Celery", "role": "backfleet", "runs": []}
    celery["runs"] = [_celery_run(4.0, 3.5, 140), _celery_run(4.4, 3.6, 151), {"ok": False}]
    scenario["contenders"].insert(0, celery)  # type: ignore[attr-defined]

    lines = report.celery_worker_section([scenario])

    assert lines[0] == "## The headline contender: time and memory of the Celery path"
    assert (
        "| dir-1G-backup | backfleet backup --wait | 4.20 | 3.55 | 0.65 | 3.5 | 0.5 | 120 MiB "
        "| 60 MiB | 90 MiB | 100 MiB | 151 MiB |" in lines
    )
    assert report.celery_worker_section([_backup([])]) == []


def test_the_cpu_section_gives_the_ratio_both_runs_cpu_seconds_allow() -> None:
    backup = _backup([_run(5.0, 4.5, 4.0, 0.5)])
    backup["contenders"][0]["runs"][0]["server_cpu_s"] = 4.0  # type: ignore[index]
    backup["contenders"][1]["runs"][0]["server_cpu_s"] = 4.0  # type: ignore[index]
    restore = {"id": "dir-1G-restore", "kind": "dir-restore", "contenders": []}

    lines = report.cpu_section([report.with_running_worker(backup), restore], cores=2)

    assert lines[0] == "## Where the CPU went (directory backups)"
    rows = [line for line in lines if line.startswith("| dir-1G-backup")]
    assert rows == [
        "| dir-1G-backup | aws | 5.0 | 4.0 | 9.0 | 90% | - | - |",
        "| dir-1G-backup | Backfleet | 4.0 | 4.0 | 8.0 | 80% | 1.25x | 1.12x |",
        "| dir-1G-backup | Backfleet, in a running worker (process start excluded) | 3.5 | 4.0 "
        "| 7.5 | 83% | 1.43x | 1.20x |",
    ]
    assert report.cpu_section([restore], cores=2) == []

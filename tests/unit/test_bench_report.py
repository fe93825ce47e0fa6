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

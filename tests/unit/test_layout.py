"""Issue 18's measured layout: a house a newcomer can read from its folders.

Small modules with one job (none over MAX_LINES), few modules at the top of workers/
(the rest live in its layered packages), and no formatter escape hatch (fmt skip).
The import contract (`lint-imports`) keeps the layers and forbids cycles."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("workers", "tasks", "api")
MAX_LINES = 400
MAX_TOP_LEVEL_MODULES = 12  # .py files directly in workers/, __init__.py included


def _sources() -> list[Path]:
    paths = [ROOT / "beat_schedule.py"]
    for package in PACKAGES:
        paths.extend((ROOT / package).rglob("*.py"))
    return sorted(paths)


def test_no_module_is_over_the_line_limit() -> None:
    long = {
        str(path.relative_to(ROOT)): count
        for path in _sources()
        if (count := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these by concern (docs/architecture.md): {long}"


def test_workers_has_few_top_level_modules() -> None:
    top = sorted(path.name for path in (ROOT / "workers").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_no_formatter_escape_hatches() -> None:
    marker = "# fmt: " + "skip"  # spelt in two so this file does not match itself
    paths = [*_sources(), *(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]
    found = [str(path.relative_to(ROOT)) for path in paths if marker in path.read_text()]
    assert found == []

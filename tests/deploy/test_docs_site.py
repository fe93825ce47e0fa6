"""The documentation site: its generated pages are those the code makes now, and it
builds with `mkdocs build --strict` (every link and anchor resolves) with nothing
loaded from another host."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.known import ROOT
from workers.cli.docgen import PAGES, write_pages

REFERENCE = ROOT / "docs" / "reference"


def test_the_generated_pages_are_up_to_date(tmp_path: Path) -> None:
    fresh = {path.name: path.read_text() for path in write_pages(tmp_path)}
    stale = [name for name in PAGES if (REFERENCE / name).read_text() != fresh[name]]
    assert stale == [], f"run `make docs` and commit docs/reference/: {stale} changed"


def test_the_generators_are_deterministic(tmp_path: Path) -> None:
    first = [path.read_text() for path in write_pages(tmp_path / "a")]
    assert first == [path.read_text() for path in write_pages(tmp_path / "b")]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("mkdocs is not installed (a dev dependency: pip install -e '.[dev]')")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's notice about MkDocs 2.0
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return out


def test_the_site_builds_strictly_with_every_page(site: Path) -> None:
    for page in ("index", "quickstart", "security", "fleet", "runbook", "architecture"):
        assert (site / f"{page}.html").is_file()
    for name in PAGES:
        assert (site / "reference" / name.replace(".md", ".html")).is_file()
    # The snippets were included, not left as markers.
    results = (site / "benchmarks" / "results.html").read_text()
    assert "Backfleet benchmark results" in results and "--8&lt;--" not in results
    # GitHub's `\|` in a table's code span shows as a pipe (workers/cli/docgen/mkdocs_hooks.py).
    assert "<code>backfleet restore TIMESTAMP|latest" in (site / "cli.html").read_text()


def test_no_page_loads_anything_from_another_host(site: Path) -> None:
    """No web font, script, style or image from a CDN: the site works offline."""
    loads = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=\"(?:https?:)?//", re.I)
    offenders = sorted(
        str(page.relative_to(site))
        for page in site.rglob("*.html")
        if loads.search(page.read_text())
    )
    assert offenders == []

"""The generated reference pages of the documentation site (`make docs`).

Each page is rendered from what the code declares, so it cannot drift from it: the
settings from `workers.settings.Settings` (each field's description), the command line
from the click group `workers.cli.main`, the HTTP API from the app's OpenAPI document.
Only `python -m workers.cli.docgen` and the docs test import this package.
"""

from collections.abc import Callable
from pathlib import Path

from workers.cli.docgen.api_page import api_page
from workers.cli.docgen.cli_page import cli_page
from workers.cli.docgen.settings_page import settings_page

# File name under docs/reference/ -> the function that renders it.
PAGES: dict[str, Callable[[], str]] = {
    "settings.md": settings_page,
    "cli.md": cli_page,
    "api.md": api_page,
}


def write_pages(folder: Path) -> list[Path]:
    """Render every page into `folder` (created if missing); the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, render in PAGES.items():
        path = folder / name
        path.write_text(render(), encoding="utf-8")
        written.append(path)
    return written

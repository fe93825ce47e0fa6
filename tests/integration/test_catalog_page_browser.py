"""The catalog page in a real browser, with the network off: a user signs in with the form
and sees the backups, the drills and the alerts, and nothing on the page runs or loads.

The real API (`backfleet api`) serves a seeded SQLite catalog; headless Chromium (driven
through the DevTools protocol over a pipe, tests/cdp.py) opens the page, is sent to the
login form, types the key and submits it, as a person would, and lands on the catalog.
Every host name but the API's resolves to nothing, as in tests/integration/test_api_docs_browser.py.

The screenshot on docs/api.md (docs/images/catalog-page.png) is this test's: run it with
BACKFLEET_UPDATE_SCREENSHOT=1 to write it again.
"""

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.catalog_seed import ALERT_TEXT, SCRIPT_ERROR, Seeded, seed_catalog
from tests.cdp import Browser, chromium, offline_flags
from tests.fleet_processes import FleetProcesses, free_port
from tests.unit.test_api import CONFIG
from tests.unit.test_api_docs import other_hosts, resource_urls
from workers.catalog.migrate import upgrade_catalog

pytestmark = [pytest.mark.integration]

KEY = "catalog-browser-key-8d21"
APP_ONLY_KEY = "catalog-browser-app-only-44f0"
HOST = "backfleet.test"  # a reserved name, mapped to 127.0.0.1
SCREENSHOT = Path(__file__).parents[2] / "docs" / "images" / "catalog-page.png"
WIDTH, HEIGHT = 1280, 900


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Seeded]]:
    """The base URL of a real `backfleet api` process on a seeded catalog."""
    tmp = tmp_path_factory.mktemp("catalog-api")
    config = tmp / "backfleet.toml"
    config.write_text(CONFIG)
    database_url = f"sqlite:///{tmp / 'catalog.db'}"
    upgrade_catalog(database_url)
    seeded = seed_catalog(database_url)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BACKFLEET_CONFIG": str(config),
        "OBJECT_STORE_LOCATION_LOCAL": str(tmp / "store"),
        "BACKFLEET_API_KEYS": f"{KEY}:ops@example.com:acme,"
        f"{APP_ONLY_KEY}:dev@example.com:acme:app:read",
        "BROKER_URL": "redis://127.0.0.1:1/0",  # never called by the page
    }
    for name in ("REDIS_URL", "BACKFLEET_NAMESPACE", "BACKFLEET_UI_SECRET"):
        env.pop(name, None)
    processes = FleetProcesses(env, tmp / "logs")
    try:
        processes.api(port)
        yield f"http://{HOST}:{port}", seeded
    finally:
        processes.close()


def sign_in(browser: Browser, base: str, key: str) -> None:
    """Open the page, get sent to the form, type the key and submit it."""
    browser.load("Page.navigate", url=f"{base}/athena/ui")
    assert browser.evaluate("location.pathname") == "/athena/ui/login"
    browser.load(
        "document.querySelector('input[name=key]').value = " + json.dumps(key) + ";"
        "document.querySelector('form.login button[type=submit]').click()"
    )


def png_size(image: bytes) -> tuple[int, int]:
    assert image[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", image[16:24])
    return int(width), int(height)


def test_a_user_signs_in_and_sees_the_catalog(api: tuple[str, Seeded], tmp_path: Path) -> None:
    base, seeded = api
    chromium()
    with Browser(
        tmp_path / "profile", flags=offline_flags(HOST), width=WIDTH, height=HEIGHT
    ) as browser:
        sign_in(browser, base, KEY)
        assert browser.evaluate("location.pathname") == "/athena/ui"
        text = str(browser.evaluate("document.body.innerText"))
        for stamp in (seeded.good, seeded.failed, seeded.running, seeded.team_b):
            assert stamp in text
        assert "Namespace app" in text and "Namespace team-b" in text
        assert "met RTO" in text and "missed RTO" in text  # postgres's drill, gitserver's
        assert "never drilled" in text  # settings
        # The markup in the catalog is shown as text, and none of it ran or loaded.
        assert SCRIPT_ERROR in text and ALERT_TEXT in text
        assert browser.evaluate("document.scripts.length") == 0
        assert browser.evaluate("document.images.length") == 0
        dom = browser.dom()
        assert other_hosts(dom, base) == [] and resource_urls(dom) == []
        # The session is in an HttpOnly cookie: nothing on the page could read it.
        assert browser.evaluate("document.cookie") == ""
        image = browser.screenshot()
    assert png_size(image) == (WIDTH, HEIGHT)
    (tmp_path / "catalog-page.png").write_bytes(image)
    if os.environ.get("BACKFLEET_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.write_bytes(image)


def test_a_scoped_key_sees_its_namespace_only(api: tuple[str, Seeded], tmp_path: Path) -> None:
    base, seeded = api
    chromium()
    with Browser(
        tmp_path / "profile", flags=offline_flags(HOST), width=WIDTH, height=HEIGHT
    ) as browser:
        sign_in(browser, base, APP_ONLY_KEY)
        text = str(browser.evaluate("document.body.innerText"))
        assert seeded.good in text and "dev@example.com" in text
        assert "team-b" not in text and seeded.team_b not in text
        browser.load("Page.navigate", url=f"{base}/athena/ui?namespace=team-b")
        refused = str(browser.evaluate("document.body.innerText"))
        assert "may not act on the requested namespace" in refused and seeded.team_b not in refused


def test_a_wrong_key_stays_on_the_form(api: tuple[str, Seeded], tmp_path: Path) -> None:
    base, _ = api
    chromium()
    with Browser(
        tmp_path / "profile", flags=offline_flags(HOST), width=WIDTH, height=HEIGHT
    ) as browser:
        sign_in(browser, base, "not-a-key")
        assert browser.evaluate("location.pathname") == "/athena/ui/login"
        assert "invalid API key" in str(browser.evaluate("document.body.innerText"))
        browser.load("Page.navigate", url=f"{base}/athena/ui")
        assert browser.evaluate("location.pathname") == "/athena/ui/login"  # no session

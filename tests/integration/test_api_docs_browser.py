"""/docs and /redoc in a real browser with the network off: the operations are rendered.

The real API (`backfleet api`) serves the pages; headless Chromium loads them while
every host name but the API's resolves to nothing and every other connection goes to
a dead proxy, as on a cluster without internet. Before the docs served their own
assets (Swagger UI and ReDoc from a CDN) both pages stayed blank here.
"""

import html
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.fleet_processes import FleetProcesses, free_port
from tests.unit.test_api_docs import other_hosts, resource_urls

pytestmark = [pytest.mark.integration]

KEY = "docs-browser-key-29c4"
HOST = "backfleet.test"  # a reserved name, mapped to 127.0.0.1: not the loopback special case
BROWSER_SECONDS = 120  # a bound on a hung browser, not a measure: the time is virtual


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip(
            "Chromium is not installed: scripts/test-deps.sh installs Debian's `chromium` "
            "where apt-get is"
        )
    return found


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a real `backfleet api` process, as the browser names it."""
    tmp = tmp_path_factory.mktemp("docs-api")
    config = tmp / "backfleet.toml"
    config.write_text(
        f'namespace = "app"\n[services.files]\nkind = "directory"\npath = "{tmp / "files"}"\n'
    )
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp / 'catalog.db'}",
        "BACKFLEET_CONFIG": str(config),
        "OBJECT_STORE_LOCATION_LOCAL": str(tmp / "store"),
        "BACKFLEET_API_KEYS": KEY,
        "BROKER_URL": "redis://127.0.0.1:1/0",  # never called by the docs
    }
    for name in ("REDIS_URL", "BACKFLEET_NAMESPACE"):
        env.pop(name, None)
    processes = FleetProcesses(env, tmp / "logs")
    try:
        processes.api(port)
        yield f"http://{HOST}:{port}"
    finally:
        processes.close()


def load_offline(browser: str, url: str, profile: Path) -> str:
    """The page's DOM once its scripts ran, with no network but the API's address."""
    done = subprocess.run(
        [
            browser,
            "--headless=new",
            "--no-sandbox",  # tests run as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            # Every host name but the API's fails to resolve; every other address (an IP
            # literal) goes through a proxy on a port where nothing listens.
            f"--host-resolver-rules=MAP {HOST} 127.0.0.1, MAP * ~NOTFOUND",
            "--proxy-server=http://127.0.0.1:9",
            f"--proxy-bypass-list={HOST}",
            "--virtual-time-budget=15000",  # virtual ms for the scripts to render
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=BROWSER_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def summaries(base: str) -> list[str]:
    """Every operation's summary, from the document the pages render."""
    port = base.rsplit(":", 1)[1]
    document: dict[str, Any] = httpx2.get(f"http://127.0.0.1:{port}/openapi.json").json()
    return [
        operation["summary"]
        for methods in document["paths"].values()
        for operation in methods.values()
    ]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_render_every_operation_offline(api: str, page: str, tmp_path: Path) -> None:
    browser = chromium()
    dom = load_offline(browser, api + page, tmp_path / "profile")
    expected = summaries(api)
    assert "Request an on-demand backup" in expected
    missing = [summary for summary in expected if html.escape(summary, quote=False) not in dom]
    assert missing == [], f"{page} did not render {missing}; its DOM:\n{dom[:3000]}"
    # Nor did anything the scripts added ask another host for a script, a style or an image.
    assert resource_urls(dom)
    assert other_hosts(dom, api) == []

"""Headless Chromium driven through the DevTools protocol over a pipe: no WebDriver, no
websocket client, nothing beyond Debian's `chromium` and the standard library.

`chromium --remote-debugging-pipe` reads protocol messages from its fd 3 and writes its
answers and events to fd 4, each a JSON object ended by a NUL byte (the transport
Puppeteer uses). `--dump-dom` only loads a URL; this fills a form and follows it.
"""

import base64
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

# Put the two pipe ends (argv 1 and 2) at fds 3 and 4, then become the browser (argv 3...).
EXEC_WITH_PIPES = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
    "os.execv(sys.argv[3], sys.argv[3:])"
)
# Bounds on a hung browser, not measures.
START_SECONDS = 60
STEP_SECONDS = 60


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip(
            "Chromium is not installed: scripts/test-deps.sh installs Debian's `chromium` "
            "where apt-get is"
        )
    return found


def offline_flags(host: str) -> list[str]:
    """Every host name but `host` (mapped to 127.0.0.1) fails to resolve; every other
    address goes through a proxy on a port where nothing listens: no network."""
    return [
        f"--host-resolver-rules=MAP {host} 127.0.0.1, MAP * ~NOTFOUND",
        "--proxy-server=http://127.0.0.1:9",
        f"--proxy-bypass-list={host}",
    ]


class Browser:
    """One headless Chromium and one page of it."""

    def __init__(self, profile: Path, *, flags: list[str], width: int, height: int) -> None:
        self._log = (profile.parent / f"{profile.name}-chromium.log").open("wb")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        argv = [
            chromium(),
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
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            *flags,
            "about:blank",
        ]
        # The pipe ends become the browser's fds 3 and 4 (dup2 makes them inheritable).
        self.process = subprocess.Popen(
            [sys.executable, "-c", EXEC_WITH_PIPES, str(to_browser_r), str(from_browser_w), *argv],
            pass_fds=(to_browser_r, from_browser_w),
            stdout=subprocess.DEVNULL,
            stderr=self._log,  # a file: a pipe nobody reads could fill and stall the browser
            start_new_session=True,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session = ""
        targets = self.call("Target.getTargets", timeout=START_SECONDS)["targetInfos"]
        (page,) = [target for target in targets if target["type"] == "page"]
        attached = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)
        self.session = attached["sessionId"]
        self.call("Page.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    # --- the protocol ---

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium exited: {self._stderr()}")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return dict(json.loads(message))

    def call(self, method: str, *, timeout: float = STEP_SECONDS, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") != ident:
                self.events.append(answer)
                continue
            if "error" in answer:
                raise RuntimeError(f"{method}: {answer['error']}")
            return dict(answer.get("result", {}))

    def wait_for(self, event: str, *, timeout: float = STEP_SECONDS) -> dict[str, Any]:
        """The next `event` (one already received first), as the browser sent it."""
        deadline = time.monotonic() + timeout
        while True:
            for index, seen in enumerate(self.events):
                if seen.get("method") == event:
                    return dict(self.events.pop(index))
            self.events.append(self._read_message(deadline))

    # --- what a test does with a page ---

    def load(self, action: str, **params: Any) -> None:
        """Run `action` (Page.navigate, or a script that submits a form) and wait until the
        page it leads to has loaded."""
        self.events = [e for e in self.events if e.get("method") != "Page.loadEventFired"]
        if action == "Page.navigate":
            result = self.call(action, **params)
            assert "errorText" not in result, result
        else:
            self.evaluate(action)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def dom(self) -> str:
        return str(self.evaluate("document.documentElement.outerHTML"))

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def _stderr(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-3000:]

    def close(self) -> None:
        try:
            self.session = ""
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        finally:
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
            os.close(self._to_browser)
            os.close(self._from_browser)
            self._log.close()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

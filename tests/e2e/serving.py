"""Serving the app for browser tests: Streamlit (through serve.py, as `make run` does) with one job worker
beside it, on a free loopback port, and headless Chromium with the flags this closed network needs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def need_chromium() -> None:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, timeout: float) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextmanager
def serve_app(home: Path, *, env: Optional[Mapping[str, str]] = None,
              worker_args: Sequence[str] = ()) -> Iterator[str]:
    """The app on AUDIT_HOME=home with a worker beside it (the pages queue reports and full audits as jobs);
    yields its URL. Both processes log to home/streamlit.log, whose tail is shown if the app does not start."""
    env = dict(env or os.environ, AUDIT_HOME=str(home), PYTHONPATH=str(ROOT))
    port = free_port()
    log_path = home / "streamlit.log"
    with open(log_path, "w") as log:
        app = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "serve.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        worker = subprocess.Popen([sys.executable, "-m", "audit", "worker", *worker_args], cwd=ROOT, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 120
            while time.time() < deadline:
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                        break
                except OSError:
                    time.sleep(0.5)
            else:
                pytest.fail("the Streamlit server did not start: " + log_path.read_text()[-2000:])
            yield url
        finally:
            _stop(worker, 60)
            _stop(app, 20)


def launch_chromium(playwright):  # noqa: ANN001, ANN201 - playwright's sync API objects
    need_chromium()
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def open_page(page, link: str, title: str, *, tries: int = 3, wait_ms: int = 40_000) -> None:  # noqa: ANN001
    """Go to a page through the navigation and wait for its title (exactly). A click that lands while the
    current page reruns can be lost (seen under load in CI): click again when the title does not come."""
    heading = page.get_by_role("heading", name=title, exact=True)
    for attempt in range(tries):
        page.get_by_role("link", name=link).first.click()
        try:
            heading.first.wait_for(timeout=wait_ms if attempt < tries - 1 else 120_000)
            return
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: click again
            if attempt == tries - 1:
                raise

"""What the browser tests share: Debian's Chromium (never downloaded), the real server in a subprocess,
screenshots. The ``browser`` and ``page`` fixtures are in conftest.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

CHROMIUM = Path(os.environ.get("CHARTKEEPER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
VIEWPORT = {"width": 1366, "height": 768}
T = TypeVar("T")


def need_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium); "
                    "the browser tests never download a browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(tmp: Path, db_url: str) -> Iterator[str]:
    """uvicorn serving the app over ``db_url`` on a free port; yields its base URL once /login answers."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CHARTKEEPER_DATABASE_URL": db_url, "CHARTKEEPER_SECRET_KEY": "browser-test-secret",
           "CHARTKEEPER_BASE_URL": base}
    env.pop("CHARTKEEPER_COMPLETION_RULES", None)
    log = open(tmp / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "chartkeeper.web.app:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/login", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("the server did not start:\n" + (tmp / "server.log").read_text()[-3000:])
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def shot(page: Any, name: str, *, full_page: bool = False) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


@contextmanager
def seeded_server(tmp: Path, name: str, seed: Callable[[Any], T]) -> Iterator[tuple[str, str, T]]:
    """(base URL, database URL, what ``seed`` returned): a fresh SQLite database under ``tmp``, seeded
    by ``seed(db)`` before the real server starts on it. Skips when Chromium is missing."""
    from chartkeeper.db import Database

    need_chromium()
    url = f"sqlite:///{tmp / (name + '.db')}"
    db = Database(url)
    db.upgrade()
    try:
        seeded = seed(db)
    finally:
        db.dispose()
    with running_server(tmp, url) as base:
        yield base, url, seeded


def log_in(page: Any, base: str, username: str, password: str) -> None:
    """Log in through the login form, from the keyboard, and land on the home page."""
    page.goto(base + "/")
    assert page.url.startswith(base + "/login"), "an anonymous visitor is sent to the login page"
    page.fill("#username", username)
    page.fill("#password", password)
    page.press("#password", "Enter")
    page.wait_for_url(base + "/")

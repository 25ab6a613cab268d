"""Browser fixtures: one Chromium per module (after that module's ``server`` fixture has started or
skipped), a fresh context and page per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browserkit import CHROMIUM, CHROMIUM_ARGS, VIEWPORT


@pytest.fixture(scope="module")
def browser(server: Any) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport=VIEWPORT)
    pg = ctx.new_page()
    pg.set_default_timeout(10_000)
    try:
        yield pg
    finally:
        ctx.close()

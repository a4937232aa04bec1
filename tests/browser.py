"""Headless Chromium pages for browser tests: Playwright driving Debian's ``/usr/bin/chromium``.

No browser is downloaded (no ``playwright install``): ``make test`` installs Debian's
``chromium`` when it is missing, and without it these fixtures skip with the reason.

Use from a test package's ``conftest.py``::

    from tests.browser import chromium_browser, new_page  # noqa: F401  (fixtures)

    def test_page(new_page):
        view = new_page()
        view.page.goto(url)
        ...
        assert view.errors() == []

The browser is module-scoped: Playwright's sync API runs an event loop in the test thread while
it is open, so ``asyncio.run`` cannot be called in the same module's tests (run such code in a
thread of its own, or in another module).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

#: Debian's chromium (a launcher script around /usr/lib/chromium/chromium).
CHROMIUM = Path("/usr/bin/chromium")

#: Quiet, sandbox-free headless flags: no GPU, no background requests to the network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

#: Console messages Chromium logs by itself for an HTTP error answer (the page handles those).
HTTP_STATUS_ERROR = r"Failed to load resource: the server responded with a status of \d{3}"


@dataclass
class BrowserPage:
    """A page and what went wrong in it.

    Attributes:
        page: the Playwright page.
        console_errors: texts of ``console.error`` messages (including Chromium's own).
        page_errors: uncaught JavaScript exceptions.
    """

    page: Page
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def errors(self, ignore: Iterable[str] = ()) -> list[str]:
        """Console errors and uncaught exceptions, less those matching a regex in ``ignore``."""
        patterns = [re.compile(p) for p in ignore]
        found = self.console_errors + self.page_errors
        return [e for e in found if not any(p.search(e) for p in patterns)]


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Browser]:
    """A headless Chromium for the module's tests; skips when it or Playwright is missing."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"Debian's chromium is not installed at {CHROMIUM} (`make test` installs it; "
            "or run `apt-get install chromium` as root)"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_page(chromium_browser: Browser) -> Iterator[Callable[..., BrowserPage]]:
    """A factory of fresh pages (each in its own browser context), closed after the test.

    Args of the factory: ``width``, ``height`` (viewport, default 1280x800), ``timeout_ms``
    (default for every wait, 20 s) and any other keyword for ``Browser.new_context``.
    """
    contexts: list[Any] = []

    def make(width: int = 1280, height: int = 800, timeout_ms: float = 20_000, **context: Any) -> BrowserPage:
        ctx = chromium_browser.new_context(viewport={"width": width, "height": height}, **context)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(timeout_ms)
        view = BrowserPage(page)
        page.on("console", lambda msg: view.console_errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda err: view.page_errors.append(str(err)))
        return view

    yield make
    for ctx in contexts:
        ctx.close()

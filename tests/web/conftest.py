"""What every browser test shares: the real app under uvicorn on a free port, Debian's headless
Chromium, and a page that fails its test on any console error, uncaught error or request that
leaves the app (no CDN, nothing from the internet)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, Request, sync_playwright
from starlette.applications import Starlette

from graph.embedded import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


@contextmanager
def serving(app: Starlette, name: str) -> Iterator[str]:
    """``app`` served by uvicorn in a background thread; yields its base URL once /health
    answers, shuts it down after."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if not thread.is_alive():
            raise RuntimeError("uvicorn stopped before /health answered")
        try:
            if httpx2.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx2.TransportError:
            pass
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError(f"{url}/health did not answer within 60 s")
        time.sleep(0.1)
    yield url
    server.should_exit = True
    thread.join(timeout=15)
    assert not thread.is_alive(), "uvicorn did not shut down"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # A missing browser fails the run (never a silent skip): `make test` installs it.
    assert CHROMIUM.exists(), "Debian chromium is missing: `make chromium` installs it"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextmanager
def watched_page(
    browser: Browser, base_url: str, *, timeout_ms: int = 15_000, **context: Any
) -> Iterator[Page]:
    """A fresh page (own context, empty storage); on exit, asserts the page logged no console
    error, threw nothing, and requested nothing outside the app."""
    ctx = browser.new_context(base_url=base_url, **context)
    pg = ctx.new_page()
    pg.set_default_timeout(timeout_ms)
    problems: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            problems.append(f"console error: {msg.text} at {msg.location}")

    def on_page_error(err: Error) -> None:
        problems.append(f"uncaught: {err}")

    def on_request(request: Request) -> None:
        if not request.url.startswith((base_url, "data:", "blob:")):
            problems.append(f"request outside the app: {request.url}")

    pg.on("console", on_console)
    pg.on("pageerror", on_page_error)
    pg.on("request", on_request)
    yield pg
    ctx.close()
    assert problems == [], problems

"""A sandbox served for real (waitress on a free port) and a real browser.

Test modules import what they need from here; ``tests/sandbox/conftest.py``
belongs to the emulator's own tests.

The browser is the system's Chromium (``apt-get install chromium``; ``make
test`` installs it): Playwright cannot download its own build here. Without
it the browser tests skip, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from textwire.config import Settings
from textwire.sandbox.app import Sandbox, SandboxServer, create_sandbox
from textwire.sandbox.state import EmMessage

CHROMIUM = os.environ.get("TEXTWIRE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IN_CI = os.environ.get("CI", "").lower() == "true"

US_PHONE = "+14155550199"
NATIONAL_PHONE = "+14155550142"
UK_PHONE = "+447400123456"
OFF_PHONE = "+14155550123"
SANDBOX_NUMBER = "+14155550100"


def sandbox_settings(tmp_path: Path, **changes: Any) -> Settings:
    """Settings for a test sandbox: its own SQLite file, quick retries."""
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'sandbox.db'}",
        "media_store": str(tmp_path / "media"),
        "backoff_base": 0.2,
        "backoff_cap": 2.0,
        "worker_poll_interval": 0.2,
    }
    values.update(changes)
    return Settings(**values)


@contextlib.contextmanager
def serve_sandbox(
    tmp_path: Path,
    settings: Settings | None = None,
    *,
    step_delay: float = 0.05,
    **kwargs: Any,
) -> Iterator[Sandbox]:
    """A started sandbox served by waitress on 127.0.0.1 and a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        box = create_sandbox(
            settings or sandbox_settings(tmp_path),
            host="127.0.0.1",
            port=port,
            step_delay=step_delay,
            **kwargs,
        )
    except BaseException:
        sock.close()
        raise
    server = SandboxServer(box, sock, threads=16)
    server.start()
    try:
        yield box
    finally:
        server.stop()


def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)  # sleep-ok: poll interval of a bounded condition wait


def replies_to(box: Sandbox, phone: str) -> list[EmMessage]:
    """Messages the bot sent to ``phone``, oldest first."""
    return [
        m for m in box.state.conversation(phone) if m.direction.startswith("outbound")
    ]


def tiny_png(
    width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (228, 48, 63)
) -> bytes:
    """A valid PNG of one colour, made without an imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def require_chromium() -> None:
    """Skip when the system's Chromium is missing; fail in CI."""
    if os.access(CHROMIUM, os.X_OK):
        return
    message = (
        f"{CHROMIUM} not found: install it with `apt-get install chromium` "
        "(make test does)"
    )
    if IN_CI:
        pytest.fail(f"browser tests must run in CI: {message}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium through Playwright, one per test module."""
    require_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - the dev extra has it
        if IN_CI:
            pytest.fail(f"playwright is not installed: {exc}")
        pytest.skip(f"playwright is not installed: {exc}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A fresh sandbox with the help-desk bot, served on a free port."""
    with serve_sandbox(tmp_path) as box:
        yield box


class PageErrors(list[str]):
    """JavaScript errors a page raised; a test ends by expecting none."""


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest.fixture
def page(browser: Any, page_errors: PageErrors) -> Iterator[Any]:
    """A laptop-sized browser tab; fails the test on any JavaScript error."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    tab.on("pageerror", lambda exc: page_errors.append(str(exc)))
    try:
        yield tab
    finally:
        context.close()
    assert not page_errors, f"JavaScript errors on the page: {page_errors}"

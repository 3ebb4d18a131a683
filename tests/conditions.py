"""Waiting on a condition, never on the clock: for tests whose other side runs
in another thread or process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["wait_until"]


def wait_until(
    condition: Callable[[], object],
    what: str,
    *,
    timeout: float = 60.0,
    every: float = 0.02,
) -> None:
    """Return once ``condition()`` is true; fail naming ``what`` after a
    generous ``timeout`` (a busy CI machine is slow, not broken)."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        pause.wait(every)

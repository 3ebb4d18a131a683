"""Waiting for a server we started: the one helper tests and benchmarks share.

A server process on a busy machine can take seconds to import, bind and answer
its first request, and on the way it can refuse connections, accept one and
say nothing (the socket is bound before the app is loaded), reset it, or answer
503 while its database is not there yet. Every one of these is "not ready
yet", not a failure, so ``wait_for_server`` retries on *any* request error,
timeouts included, until a generous deadline; when it does give up it says why
and shows the end of the server's log, because that is where the reason is.

No pytest here: ``bench`` uses it too. ``ServerNotReady`` is an
``AssertionError``, so pytest reports it as a failed check.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

__all__ = ["ANY_ANSWER", "ServerNotReady", "wait_for_server"]

DEADLINE = 120.0
"""Seconds to wait by default: far more than a server needs on an idle machine,
so only a server that is really broken reaches it."""

ATTEMPT_TIMEOUT = 10.0
"""The longest one attempt may take (each attempt gets at most what is left)."""

LOG_TAIL = 4000
"""How much of the end of the server's log a failure shows, in characters."""

Log = Path | Callable[[], str] | None


class ServerNotReady(AssertionError):
    """The server exited, or did not answer as wanted before the deadline."""


def ANY_ANSWER(response: requests.Response) -> bool:  # noqa: N802 - a constant
    """Any HTTP answer counts (for a server with no health route)."""
    return True


def _ok(response: requests.Response) -> bool:
    return response.status_code == 200


def wait_for_server(
    url: str,
    *,
    proc: subprocess.Popen[Any] | None = None,
    log: Log = None,
    what: str | None = None,
    ready: Callable[[requests.Response], bool] = _ok,
    deadline: float = DEADLINE,
    attempt_timeout: float = ATTEMPT_TIMEOUT,
    poll: float = 0.1,
) -> float:
    """GET ``url`` until ``ready(response)``; return the seconds it took.

    Args:
        url: what to GET (usually ``…/healthz``).
        proc: the server's process: if it exits, waiting stops at once.
        log: the server's log (a file, or a function returning its text),
            shown when waiting fails.
        what: how to name the server in a failure (default: the URL).
        ready: whether an answer means ready (default: HTTP 200).
        deadline: seconds before giving up.
        attempt_timeout: the longest one request may take.
        poll: seconds between attempts.

    Raises:
        ServerNotReady: the process exited, or ``deadline`` passed; the
            message has the last error or answer and the end of the log.
    """
    name = what or url
    started = time.monotonic()
    end = started + deadline
    pause = threading.Event()  # never set: wait() is the poll interval
    last = "no attempt made"
    with requests.Session() as session:
        session.trust_env = False  # no proxy from the environment for loopback
        while True:
            if proc is not None and proc.poll() is not None:
                raise ServerNotReady(
                    _report(f"{name}: the process exited with {proc.returncode}", log)
                )
            left = end - time.monotonic()
            if left <= 0:
                raise ServerNotReady(
                    _report(f"{name}: not ready within {deadline:g} s ({last})", log)
                )
            try:
                with session.get(
                    url, timeout=min(attempt_timeout, left), allow_redirects=False
                ) as response:
                    if ready(response):
                        return time.monotonic() - started
                    last = f"last answer HTTP {response.status_code}"
            except requests.RequestException as exc:
                # Refused, reset, timed out, half an answer: all "not yet".
                last = f"last error {type(exc).__name__}: {exc}"
            pause.wait(min(poll, max(0.0, end - time.monotonic())))


def _report(message: str, log: Log) -> str:
    if log is None:
        return message
    try:
        text = log() if callable(log) else log.read_text(errors="replace")
    except OSError as exc:
        return f"{message}\n(log unreadable: {exc})"
    tail = text[-LOG_TAIL:]
    cut = "…" if len(text) > len(tail) else ""
    return f"{message}\n--- end of the server's log ---\n{cut}{tail}"

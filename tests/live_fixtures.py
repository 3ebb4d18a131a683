"""Shared by the ``textwire dev`` and ``textwire doctor`` tests.

Twilio is the emulator (``tests/sandbox/conftest.py``: its REST API served by
a real local werkzeug server, driven by the unmodified twilio client); the
app under test is served over real HTTP too, by ``serve_wsgi``.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

from textwire.config import Settings

from .sandbox.conftest import ACCOUNT_SID, AUTH_TOKEN, Emulator

__all__ = ["clean_env", "live_settings", "serve_wsgi"]


def live_settings(emulator: Emulator, tmp_path: Path, **changes: Any) -> Settings:
    """Settings for the emulator's account and number, a SQLite file in tmp_path."""
    values: dict[str, Any] = {
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_phone_number": "(415) 555-0100",
        "twilio_api_url": emulator.url,
        "twilio_timeout": 5.0,
        "database_url": f"sqlite:///{tmp_path / 'bot.db'}",
        "ngrok_authtoken": "ngrok-test-token-1234",
        "worker_poll_interval": 0.2,
    }
    values.update(changes)
    return Settings(**values)


def clean_env(**values: str) -> dict[str, str]:
    """A whole environment for a textwire process or CliRunner: every variable
    Settings reads is set (blank unless given), so none leaks in from ours."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TWILIO_", "TEXTWIRE_", "NGROK_"))
    }
    for field in dataclasses.fields(Settings):
        env["TEXTWIRE_" + field.name.upper()] = ""
        if field.name.startswith("twilio_"):
            env[field.name.upper()] = ""
    env["NGROK_AUTHTOKEN"] = ""
    env.update(values)
    return env


@contextmanager
def serve_wsgi(app: Any) -> Iterator[str]:
    """Serve ``app`` on a free local port in a thread; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

"""Production layout: `gunicorn 'textwire.web:create_app()'` with several
processes on PostgreSQL, settings from the environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from textwire.storage.sql import SqlStore

from .conftest import ACCOUNT_SID, AUTH_TOKEN, BOT_NUMBER, make_form, sign

pytestmark = pytest.mark.postgres


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def gunicorn(postgres_url: str, tmp_path: Path) -> Iterator[tuple[str, SqlStore]]:
    store = SqlStore(postgres_url)
    store.upgrade()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": BOT_NUMBER,
        "TEXTWIRE_DATABASE_URL": postgres_url,
        "TEXTWIRE_PUBLIC_URL": url,
    }
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "textwire.web:create_app()",
        ],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        wait = threading.Event()
        for _ in range(200):
            try:
                with requests.get(url + "/healthz", timeout=1) as response:
                    if response.status_code == 200:
                        break
            except (requests.ConnectionError, requests.Timeout):
                # Timeout: a worker still importing the app on a busy machine.
                pass
            if proc.poll() is not None:
                pytest.fail((tmp_path / "gunicorn.log").read_text())
            wait.wait(0.1)
        yield url, store
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        store.dispose()


def test_gunicorn_serves_signed_webhooks_into_the_outbox(
    gunicorn: tuple[str, SqlStore],
) -> None:
    url, store = gunicorn
    forms = [make_form("help", From=f"+1415555{i:04d}") for i in range(10)]
    for form in forms:
        signature = sign(url + "/twilio/sms", form)
        with requests.post(
            url + "/twilio/sms",
            data=form,
            headers={"X-Twilio-Signature": signature},
            timeout=10,
        ) as response:
            assert response.status_code == 200
            assert response.text.endswith("<Response/>")
    # A duplicate and a forgery
    with requests.post(
        url + "/twilio/sms",
        data=forms[0],
        headers={"X-Twilio-Signature": sign(url + "/twilio/sms", forms[0])},
        timeout=10,
    ) as response:
        assert response.status_code == 200
    with requests.post(
        url + "/twilio/sms", data=make_form("help"), timeout=10
    ) as response:
        assert response.status_code == 403
    assert len(store.messages.all("inbound")) == 10
    # recorded for `textwire worker` (none runs here): the webhook ran no bot
    assert [row["status"] for row in store.inbox.rows()] == ["pending"] * 10
    assert store.outbox.depth() == 0

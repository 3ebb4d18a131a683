"""A `textwire worker` SIGKILLed while its handlers run: nothing lost, nothing
doubled.

Real processes (`python -m textwire worker`) on PostgreSQL, sending with the
real twilio client to a local Twilio stand-in. The first worker's handlers
block (the bot is told to) until the process is killed mid-handler; a second
worker takes the rows over when their leases run out.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from textwire.config import Settings
from textwire.examples.helpdesk import create_bot
from textwire.storage.sql import SqlStore
from textwire.web import create_app

from .conditions import wait_until
from .conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    BOT_NUMBER,
    PUBLIC_URL,
    TwilioAPI,
    make_form,
    sign,
)

pytestmark = pytest.mark.postgres

BOT = """
import os
import pathlib
import threading

from textwire import Bot

bot = Bot(name="faultbot")
MARKS = pathlib.Path(os.environ["FAULTBOT_MARKS"])


@bot.message()
def count(msg, ctx):
    # A side effect of the handler's own: at least once, keyed by the SID.
    (MARKS / f"{msg.sid}.{os.getpid()}").touch()
    n = ctx.state.data.get("n", 0) + 1
    ctx.state.update(n=n)
    if os.environ.get("FAULTBOT_BLOCK") == "1":
        threading.Event().wait()  # until this process is killed
    return f"{msg.body} n={n}"
"""

CONTACTS = [f"+1415555{i:04d}" for i in range(6)]
PER_CONTACT = 3


@pytest.fixture
def api() -> Iterator[TwilioAPI]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    api = TwilioAPI(server)
    server.expect_request(
        re.compile(rf"^/2010-04-01/Accounts/{ACCOUNT_SID}/Messages\.json$")
    ).respond_with_handler(api.handle)
    yield api
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[SqlStore]:
    store = SqlStore(postgres_url)
    store.upgrade()
    yield store
    store.dispose()


def test_a_killed_workers_messages_are_handled_once_by_another(
    pg_store: SqlStore, api: TwilioAPI, tmp_path: Path
) -> None:
    (tmp_path / "faultbot.py").write_text(BOT)
    marks = tmp_path / "marks"
    marks.mkdir()
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(**extra: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_PHONE_NUMBER": BOT_NUMBER,
            "TEXTWIRE_TWILIO_API_URL": api.url,
            "TEXTWIRE_PUBLIC_URL": PUBLIC_URL,
            "TEXTWIRE_DATABASE_URL": pg_store.url,
            "TEXTWIRE_BOT": "faultbot:bot",
            "TEXTWIRE_LEASE_SECONDS": "3",
            "TEXTWIRE_RATE_LIMIT_MPS": "1000",
            "TEXTWIRE_WORKER_POLL_INTERVAL": "0.2",
            "FAULTBOT_MARKS": str(marks),
            **extra,
        }
        log = open(tmp_path / f"worker-{len(procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "textwire", "worker"],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        procs.append(proc)
        return proc

    def logs() -> str:
        return "\n".join(p.read_text() for p in sorted(tmp_path.glob("worker-*.log")))

    # Given 18 accepted webhooks: 6 contacts, 3 messages each
    settings = Settings(
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        public_url=PUBLIC_URL,
        database_url=pg_store.url,
    )
    app = create_app(settings, bot=create_bot(), store=pg_store)
    client = app.test_client()
    for round_ in range(PER_CONTACT):
        for contact in CONTACTS:
            form = make_form(f"m{round_}", From=contact)
            signature = sign(PUBLIC_URL + "/twilio/sms", form)
            response = client.post(
                "/twilio/sms", data=form, headers={"X-Twilio-Signature": signature}
            )
            assert response.status_code == 200
    try:
        # When a worker is SIGKILLed while each contact's first message is
        # in its handler
        first = spawn(FAULTBOT_BLOCK="1")
        wait_until(
            lambda: len(list(marks.iterdir())) >= len(CONTACTS) or first.poll(),
            "the first worker's handlers to start",
        )
        assert first.poll() is None, logs()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        assert [r["status"] for r in pg_store.inbox.rows()].count("done") == 0
        # and another worker takes over once their leases run out
        second = spawn()
        total = len(CONTACTS) * PER_CONTACT
        wait_until(
            lambda: len(api.creates) >= total or second.poll() is not None,
            f"{total} replies",
            timeout=120,
        )
        assert second.poll() is None, logs()
        wait_until(
            lambda: all(r["status"] == "done" for r in pg_store.inbox.rows()),
            "every inbox row done",
        )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    # Then every accepted webhook got its reply exactly once
    sent = Counter((c["form"]["To"][0], c["form"]["Body"][0]) for c in api.creates)
    expected = {
        (contact, f"m{round_} n={round_ + 1}")
        for contact in CONTACTS
        for round_ in range(PER_CONTACT)
    }
    assert set(sent) == expected, logs()
    assert set(sent.values()) == {1}
    # the conversation state counted each message once (n = 1, 2, 3), though
    # the killed worker's handlers ran too: at least once, keyed by MessageSid
    runs = Counter(path.name.split(".")[0] for path in marks.iterdir())
    assert len(runs) == len(CONTACTS) * PER_CONTACT
    assert sorted(runs.values()).count(2) == len(CONTACTS)

"""Several `textwire worker` processes on one PostgreSQL, and one killed mid-batch.

The workers are real processes (`python -m textwire worker`) sending with the
real twilio client to a local Twilio stand-in with 200 ms of API latency.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from pytest_httpserver import HTTPServer

from textwire.config import Settings
from textwire.service import queue_message
from textwire.storage.sql import SqlStore

from .conftest import ACCOUNT_SID, AUTH_TOKEN, BOT_NUMBER, PUBLIC_URL, TwilioAPI

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[SqlStore]:
    store = SqlStore(postgres_url)
    store.upgrade()
    yield store
    store.dispose()


@pytest.fixture
def slow_api() -> Iterator[TwilioAPI]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    api = TwilioAPI(server, latency=0.2)
    server.expect_request(
        re.compile(rf"^/2010-04-01/Accounts/{ACCOUNT_SID}/Messages\.json$")
    ).respond_with_handler(api.handle)
    yield api
    server.clear()
    if server.is_running():
        server.stop()


Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def spawn_worker(
    pg_store: SqlStore, slow_api: TwilioAPI, tmp_path: Path
) -> Iterator[Spawn]:
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(**extra: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_PHONE_NUMBER": BOT_NUMBER,
            "TEXTWIRE_TWILIO_API_URL": slow_api.url,
            "TEXTWIRE_PUBLIC_URL": PUBLIC_URL,
            "TEXTWIRE_DATABASE_URL": pg_store.url,
            "TEXTWIRE_RATE_LIMIT_MPS": "1000",
            "TEXTWIRE_WORKER_POLL_INTERVAL": "0.1",
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

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(condition: Callable[[], bool], timeout: float = 90.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    done = threading.Event()
    deadline = datetime.now(UTC).timestamp() + timeout
    while not condition():
        if datetime.now(UTC).timestamp() > deadline:
            pytest.fail(f"condition not met within {timeout:.0f} s")
        done.wait(0.1)


def outbox_ids_sent(api: TwilioAPI) -> list[int]:
    ids = []
    for create in api.creates:
        callback = create["form"]["StatusCallback"][0]
        ids.append(int(parse_qs(urlsplit(callback).query)["outbox"][0]))
    return ids


def all_sent(store: SqlStore, ids: list[int]) -> bool:
    return all((store.outbox.row(i) or {}).get("status") == "sent" for i in ids)


SETTINGS = Settings(twilio_phone_number=BOT_NUMBER, public_url=PUBLIC_URL)


def test_three_workers_drain_one_outbox_once_each_in_order(
    pg_store: SqlStore, slow_api: TwilioAPI, spawn_worker: Spawn
) -> None:
    # Given 20 phones each owed a three-part reply (60 messages)
    phones = [f"+1415555{i:04d}" for i in range(20)]
    ids = [
        queue_message(pg_store, to=phone, body=f"part {part}", settings=SETTINGS)[0]
        for part in (1, 2, 3)
        for phone in phones
    ]
    # When three worker processes drain it against a 200 ms API (four sends
    # at a time each, so that one worker cannot take every row)
    for _ in range(3):
        spawn_worker(TEXTWIRE_WORKER_CONCURRENCY="4")
    wait_for(lambda: all_sent(pg_store, ids))
    # Then every message was created exactly once ...
    sent = outbox_ids_sent(slow_api)
    assert Counter(sent) == Counter(ids)
    # ... and each phone got its parts in order
    for phone in phones:
        bodies = [
            c["form"]["Body"][0] for c in slow_api.creates if c["form"]["To"] == [phone]
        ]
        assert bodies == ["part 1", "part 2", "part 3"], phone
    # ... by more than one worker
    claimed_by = {row["claimed_by"] for row in _outbox_rows(pg_store)}
    assert len(claimed_by) >= 2


def _outbox_rows(store: SqlStore) -> list[dict[str, object]]:
    from sqlalchemy import select

    from textwire.storage.schema import OutboxItem

    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(OutboxItem.__table__))]


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(
    pg_store: SqlStore, slow_api: TwilioAPI, spawn_worker: Spawn
) -> None:
    # Given 30 messages to 30 phones, each body unique
    ids = [
        queue_message(
            pg_store, to=f"+1415555{i:04d}", body=f"receipt {i}", settings=SETTINGS
        )[0]
        for i in range(30)
    ]
    # When a worker is SIGKILLed while it is sending (API calls take 200 ms)
    doomed = spawn_worker(TEXTWIRE_WORKER_CONCURRENCY="4", TEXTWIRE_LEASE_SECONDS="3")
    wait_for(lambda: len(slow_api.creates) >= 6)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    at_kill = len(slow_api.creates)
    created_before_kill = set(outbox_ids_sent(slow_api))
    # and two fresh workers take over once the dead one's leases expire
    spawn_worker(TEXTWIRE_LEASE_SECONDS="3")
    spawn_worker(TEXTWIRE_LEASE_SECONDS="3")
    wait_for(lambda: all_sent(pg_store, ids))
    # Then every message reached Twilio exactly once
    sent = outbox_ids_sent(slow_api)
    assert Counter(sent) == Counter(ids), "a message was lost or sent twice"
    assert at_kill < len(ids)
    # and the rows the dead worker held were reconciled, not resent blind
    rows = {row["id"]: row for row in _outbox_rows(pg_store)}
    taken_over = [i for i in ids if rows[i]["attempts"] > 1]  # type: ignore[operator]
    assert taken_over, "the killed worker held no rows: the test proved nothing"
    # Some of them had reached Twilio before the kill: adopted, not sent again.
    assert set(taken_over) & created_before_kill


def test_workers_under_500s_429s_and_stalls_send_everything_exactly_once(
    pg_store: SqlStore, slow_api: TwilioAPI, spawn_worker: Spawn
) -> None:
    # Given an API that answers 10% of creates 500, 10% 429, and accepts 5% but
    # answers them after our 0.5 s timeout
    slow_api.latency = 0.05
    slow_api.chaos = (0.10, 0.10, 0.05)
    ids = [
        queue_message(
            pg_store, to=f"+1415555{i % 25:04d}", body=f"note {i}", settings=SETTINGS
        )[0]
        for i in range(75)
    ]
    fast = {
        "TEXTWIRE_TWILIO_TIMEOUT": "0.5",
        "TEXTWIRE_BACKOFF_BASE": "0.2",
        "TEXTWIRE_BACKOFF_CAP": "1",
        "TEXTWIRE_MAX_SEND_ATTEMPTS": "20",
    }
    for _ in range(3):
        spawn_worker(**fast)
    wait_for(lambda: all_sent(pg_store, ids), timeout=120)
    # Then each message exists exactly once at Twilio, and none is missing
    created = Counter(body["body"] for body in slow_api.created)
    assert created == Counter(f"note {i}" for i in range(75))
    # and the faults really happened: refused POSTs were retried
    assert len(slow_api.creates) > len(slow_api.created) == 75

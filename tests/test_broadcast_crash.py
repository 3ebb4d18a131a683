"""A broadcast killed with SIGKILL mid-import or mid-send, then ``broadcast
resume``: every valid recipient is sent exactly once, with exact counts.

Real ``textwire`` processes against a local stand-in for Twilio's API, on
SQLite and on PostgreSQL. Nothing waits on the clock: the test waits for the
database or the API to reach the state it kills the process in.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from textwire.config import Settings
from textwire.storage.sql import SqlStore

from .conditions import wait_until
from .conftest import ACCOUNT_SID, AUTH_TOKEN, BOT_NUMBER, TwilioAPI

VALID = 240
DUPLICATES = 12
INVALID = 6
BATCH = 40


def numbers(n: int) -> list[str]:
    return [f"+1415{3000000 + i:07d}" for i in range(n)]


@pytest.fixture
def members(tmp_path: Path) -> Path:
    rows = [f"{p},Member {i}" for i, p in enumerate(numbers(VALID))]
    rows += [f"{p},Again" for p in numbers(DUPLICATES)]  # the first ones, twice
    rows += [f"555-{i:02d},Typo" for i in range(INVALID)]
    path = tmp_path / "members.csv"
    path.write_text("phone,first_name\n" + "\n".join(rows) + "\n")
    return path


@dataclasses.dataclass
class Gate:
    """Holds back the answers to creates after the first ``after``: Twilio has
    the message, the sender never hears so (it is killed waiting)."""

    after: int = 10**9
    opened: threading.Event = dataclasses.field(default_factory=threading.Event)


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def api(gate: Gate) -> Iterator[TwilioAPI]:
    # Threaded: a held-back answer holds up no other request.
    server = HTTPServer(threaded=True)
    server.start()
    stand_in = TwilioAPI(server)

    def handle(request: Request) -> Response:
        response = stand_in.handle(request)
        if request.method == "POST":
            with stand_in.lock:
                late = len(stand_in.created) > gate.after
            if late:
                gate.opened.wait(60)
        return response

    server.expect_request(
        re.compile(rf"^/2010-04-01/Accounts/{ACCOUNT_SID}/Messages\.json$")
    ).respond_with_handler(handle)
    yield stand_in
    gate.opened.set()
    server.clear()
    server.stop()


@pytest.fixture
def env(database_url: str, api: TwilioAPI, tmp_path: Path) -> dict[str, str]:
    store = SqlStore(database_url)
    store.upgrade()  # PostgreSQL is migrated by `textwire db upgrade`
    store.dispose()
    names = [f"TEXTWIRE_{f.name.upper()}" for f in dataclasses.fields(Settings)]
    environ = {k: v for k, v in os.environ.items() if k not in names}
    environ.update(
        {
            "TEXTWIRE_DATABASE_URL": database_url,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_PHONE_NUMBER": BOT_NUMBER,
            "TEXTWIRE_TWILIO_API_URL": api.url,
            "TEXTWIRE_TWILIO_TIMEOUT": "30",
            "TEXTWIRE_RATE_LIMIT_MPS": "500",
            # A killed sender's rows come back to the next one this soon.
            "TEXTWIRE_LEASE_SECONDS": "2",
            "TEXTWIRE_WORKER_POLL_INTERVAL": "0.1",
            "NO_COLOR": "1",
        }
    )
    return environ


# Stops the import after a batch: the process is killed while it waits here.
STALL = """
import sys, threading
from textwire.broadcast import service

def stall(broadcast_id, imported_rows):
    if imported_rows >= {rows}:
        threading.Event().wait(120)

service._after_batch = stall
from textwire.cli import main
sys.argv[0] = "textwire"
main()
"""


def textwire(
    args: list[str], env: dict[str, str], tmp_path: Path, *, wrapper: str = ""
) -> subprocess.Popen[bytes]:
    """``textwire ARGS`` in a process of its own (``wrapper``: a script that
    patches it first), its output in a log file."""
    if wrapper:
        script = tmp_path / "wrapper.py"
        script.write_text(wrapper)
        command = [sys.executable, str(script), *args]
    else:
        command = [sys.executable, "-m", "textwire", *args]
    name = f"{args[1]}-{len(list(tmp_path.glob('*.log')))}.log"
    with (tmp_path / name).open("wb") as log:
        return subprocess.Popen(
            command,
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def finish(proc: subprocess.Popen[bytes], tmp_path: Path) -> None:
    code = proc.wait(timeout=240)
    logs = "\n".join(
        p.read_text(errors="replace") for p in sorted(tmp_path.glob("*.log"))
    )
    assert code == 0, logs


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def check_exactly_once(store: SqlStore, api: TwilioAPI) -> None:
    sent = Counter(m["to"] for m in api.created)
    assert set(sent) == set(numbers(VALID))
    assert max(sent.values()) == 1, [n for n, c in sent.items() if c > 1]
    [b] = store.broadcasts.all()
    assert (b["rows_read"], b["valid"], b["duplicates"], b["invalid"]) == (
        VALID + DUPLICATES + INVALID,
        VALID,
        DUPLICATES,
        INVALID,
    )
    assert b["imported_rows"] == VALID + DUPLICATES + INVALID
    from datetime import UTC, datetime

    progress = store.broadcasts.progress(b["id"], datetime.now(UTC))
    assert (progress["total"], progress["sent"], progress["open"]) == (VALID, VALID, 0)


def test_killed_mid_import_then_resumed(
    env: dict[str, str],
    api: TwilioAPI,
    members: Path,
    tmp_path: Path,
    database_url: str,
) -> None:
    create = textwire(
        [
            "broadcast",
            "create",
            str(members),
            "--body",
            "Hi {first_name}",
            "--yes",
            "--import-batch",
            str(BATCH),
        ],
        env,
        tmp_path,
        wrapper=STALL.format(rows=3 * BATCH),
    )
    store = SqlStore(database_url)
    try:

        def stalled() -> bool:
            found = store.broadcasts.all()
            return bool(found) and found[0]["imported_rows"] == 3 * BATCH

        wait_until(stalled, "the import to stop after three batches")
        kill(create)
        [b] = store.broadcasts.all()
        assert b["status"] == "importing"
        assert store.broadcasts.progress(b["id"], b["created_at"])["total"] == 3 * BATCH
        assert api.created == []  # nothing is sent before the import is done

        finish(textwire(["broadcast", "resume", str(b["id"])], env, tmp_path), tmp_path)
        check_exactly_once(store, api)
    finally:
        store.dispose()


def test_killed_mid_send_then_resumed(
    env: dict[str, str],
    api: TwilioAPI,
    gate: Gate,
    members: Path,
    tmp_path: Path,
    database_url: str,
) -> None:
    gate.after = 100
    create = textwire(
        ["broadcast", "create", str(members), "--body", "Hi {first_name}", "--yes"],
        env,
        tmp_path,
    )
    store = SqlStore(database_url)
    try:
        # Killed with creates Twilio accepted but never answered: those rows
        # are reconciled, never sent again.
        wait_until(lambda: len(api.created) >= gate.after + 3, "creates held back")
        kill(create)
        gate.opened.set()
        held = len(api.created) - gate.after
        [b] = store.broadcasts.all()
        assert b["status"] == "sending"

        finish(textwire(["broadcast", "resume", str(b["id"])], env, tmp_path), tmp_path)
        check_exactly_once(store, api)
        assert held >= 3
    finally:
        store.dispose()

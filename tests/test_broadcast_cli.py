"""``textwire broadcast …``, ``textwire scheduled …`` and ``send --at`` through
click's CliRunner: the preview, bad input (one line, exit 2, nothing queued),
pause/resume/cancel/export, and scheduled messages.

Every invocation gets a complete environment (each setting blank unless set)
and an empty working directory, as in ``test_cli.py``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from textwire import phone
from textwire.cli import main
from textwire.config import Settings
from textwire.storage.sql import SqlStore

from .conftest import ACCOUNT_SID, AUTH_TOKEN, BOT_NUMBER, TwilioAPI

MEMBERS = """phone,first_name
(415) 555-0199,Ana
415-555-0142,Ben
+44 7400 123456,Chloe
+1 415 555 0199,Ana twice
12345,Nobody
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    region = phone.get_default_region()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    phone.set_default_region(region)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cli.db"


@pytest.fixture
def env(db_path: Path, twilio_api: TwilioAPI) -> dict[str, str]:
    names = []
    for field in dataclasses.fields(Settings):
        names.append("TEXTWIRE_" + field.name.upper())
        if field.name.startswith("twilio_"):
            names.append(field.name.upper())
    values = dict.fromkeys(names, "")
    values.update(
        {
            "TEXTWIRE_DATABASE_URL": f"sqlite:///{db_path}",
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_PHONE_NUMBER": BOT_NUMBER,
            "TEXTWIRE_TWILIO_API_URL": twilio_api.url,
            "TEXTWIRE_TWILIO_TIMEOUT": "5",
            "TEXTWIRE_RATE_LIMIT_MPS": "1000",
            "TEXTWIRE_WORKER_POLL_INTERVAL": "0.05",
            "COLUMNS": "200",
            "NO_COLOR": "1",
        }
    )
    return values


def invoke(args: list[str], env: dict[str, str], **kwargs: Any) -> Result:
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False, **kwargs)


def ok(args: list[str], env: dict[str, str]) -> Result:
    result = invoke(args, env)
    assert result.exit_code == 0, result.output
    return result


def outbox_count(db_path: Path) -> int:
    if not db_path.exists():
        return 0
    store = SqlStore(f"sqlite:///{db_path}")
    try:
        if store.current_revision() is None:
            return 0
        with store.db.read() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM outbox").scalar_one())
    finally:
        store.dispose()


def bad_input(result: Result, phrase: str, db_path: Path) -> None:
    """Exit 2, one error line naming ``phrase``, no traceback, nothing queued."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("error:") and phrase in errors[0], errors
    assert outbox_count(db_path) == 0


@pytest.fixture
def members(tmp_path: Path) -> Path:
    path = tmp_path / "members.csv"
    path.write_text(MEMBERS)
    return path


# -- create and the preview ------------------------------------------------------------


def test_the_preview_then_queue_and_send(
    members: Path, env: dict[str, str], twilio_api: TwilioAPI, db_path: Path
) -> None:
    result = ok(
        ["broadcast", "create", str(members), "--body", "Hi {first_name}", "-y"], env
    )
    text = result.stdout
    for expected in (
        "rows read             5",
        "valid                 3",
        "invalid               1  listed in members.rejects.csv",
        "duplicates            1  sent once",
        "GSM-7 3",
        "GB 1 SMS · US 2 SMS",
        "sending time",
        "line 6: invalid number",
        "sample 1 (line 2, +1415***0199)",
        "Hi Ana",
        "broadcast #1 'members.csv': 3 messages queued",
        "3 sent, 0 failed",
    ):
        assert expected in text, (expected, text)
    assert "+14155550199" not in result.output  # numbers masked
    assert sorted(c["form"]["To"][0] for c in twilio_api.creates) == [
        "+14155550142",
        "+14155550199",
        "+447400123456",
    ]
    assert (
        (members.parent / "members.rejects.csv")
        .read_text()
        .startswith("line,reason,phone,first_name\n6,")
    )


def test_without_yes_and_no_terminal_it_stops_after_the_preview(
    members: Path, env: dict[str, str], db_path: Path
) -> None:
    result = ok(["broadcast", "create", str(members), "--body", "Hi {first_name}"], env)
    assert "preview only: nothing queued" in result.stdout
    assert outbox_count(db_path) == 0


def test_the_same_name_and_file_twice_is_refused(
    members: Path, env: dict[str, str], twilio_api: TwilioAPI
) -> None:
    args = ["broadcast", "create", str(members), "--body", "Hi", "-y", "--queue-only"]
    ok(args, env)
    again = invoke(args, env)
    assert again.exit_code == 2
    assert (
        "broadcast #1 ('members.csv') was already made from this file" in again.stderr
    )
    assert twilio_api.creates == []
    # Another name is another broadcast.
    ok([*args, "--name", "second run"], env)


# -- bad input: one line, exit 2, nothing queued ---------------------------------------


@pytest.mark.parametrize(
    ("content", "extra", "phrase"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", [], "is not a CSV file"),
        (b"", [], "is empty"),
        (b"name,city\nAna,Paris\n", [], "has no number column"),
        (b"phone\n+14155550199\n", ["--body", "Hi {first_name"], "syntax error"),
        (b"phone\n+14155550199\n", ["--body", "Hi {first_name}"], "in every row"),
        (
            b"phone,first_name\n+14155550199,\n",
            ["--body", "Hi {first_name}"],
            "no row of list.csv can be sent (line 2: template field missing",
        ),
        (b"phone\n+14155550199\n", ["--at", "yesterday 10:00"], "in the past"),
        (b"phone\n+14155550199\n", ["--at", "sometime soon"], "cannot read"),
        (b"phone\n+14155550199\n", ["--at", "+400d"], "more than a year ahead"),
        (b"phone\n+14155550199\n", ["--quiet-hours", "late"], "quiet hours"),
        (b"phone\n+14155550199\n", ["--media", "not-a-url"], "media URL"),
    ],
)
def test_bad_input(
    tmp_path: Path,
    env: dict[str, str],
    db_path: Path,
    content: bytes,
    extra: list[str],
    phrase: str,
) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(content)
    body = [] if "--body" in extra else ["--body", "Hi"]
    result = invoke(["broadcast", "create", str(path), *body, *extra, "-y"], env)
    bad_input(result, phrase, db_path)


@pytest.mark.parametrize("command", ["status", "pause", "resume", "cancel", "export"])
def test_an_unknown_broadcast_id(
    command: str, env: dict[str, str], db_path: Path
) -> None:
    bad_input(invoke(["broadcast", command, "42"], env), "no broadcast #42", db_path)


def test_resuming_a_cancelled_broadcast(
    members: Path, env: dict[str, str], db_path: Path
) -> None:
    ok(["broadcast", "create", str(members), "--body", "Hi", "-y", "--queue-only"], env)
    assert "3 messages not sent" in ok(["broadcast", "cancel", "1"], env).stdout
    result = invoke(["broadcast", "resume", "1"], env)
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == "error: broadcast #1 was cancelled: it cannot be resumed"
    )


# -- pause, resume, status, export -----------------------------------------------------


def test_pause_resume_status_and_export(
    members: Path, env: dict[str, str], twilio_api: TwilioAPI
) -> None:
    ok(["broadcast", "create", str(members), "--body", "Hi", "-y", "--queue-only"], env)
    assert "paused" in ok(["broadcast", "pause", "1"], env).stdout
    status = ok(["broadcast", "status", "1"], env).stdout
    assert "broadcast #1 'members.csv': paused" in status
    assert "queued                 3" in status
    listing = ok(["broadcast", "list"], env).stdout
    assert "members.csv" in listing and "paused" in listing
    resumed = ok(["broadcast", "resume", "1"], env).stdout
    assert "resumed" in resumed and "3 sent" in resumed
    assert len(twilio_api.creates) == 3
    watched = ok(["broadcast", "status", "1", "--watch"], env).stdout
    assert "sent                   3" in watched
    exported = ok(["broadcast", "export", "1"], env).stdout
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [r["status"] for r in rows] == ["sent"] * 3
    assert all(r["sid"].startswith("SM") for r in rows)
    assert {r["phone"] for r in rows} == {
        "+14155550199",
        "+14155550142",
        "+447400123456",
    }


def test_export_gives_the_error_code_and_its_reason(
    tmp_path: Path, env: dict[str, str], twilio_api: TwilioAPI
) -> None:
    path = tmp_path / "one.csv"
    path.write_text("phone\n+14155550199\n")
    twilio_api.failures.append(
        (
            400,
            {
                "code": 21610,
                "message": "Attempt to send to unsubscribed recipient",
                "status": 400,
            },
            {},
        )
    )
    ok(["broadcast", "create", str(path), "--body", "Hi", "-y"], env)
    out = tmp_path / "result.csv"
    ok(["broadcast", "export", "1", "-o", str(out)], env)
    [row] = list(csv.DictReader(io.StringIO(out.read_text())))
    assert (row["status"], row["error_code"]) == ("failed", "21610")
    assert "STOP" in row["error"] or "opted out" in row["error"].lower(), row


# -- scheduled messages ----------------------------------------------------------------


def test_send_at_then_list_and_cancel(
    env: dict[str, str], twilio_api: TwilioAPI, db_path: Path
) -> None:
    result = ok(["send", "(415) 555-0199", "See you tomorrow", "--at", "+2h"], env)
    assert "scheduled as outbox #1 for" in result.stdout
    assert twilio_api.creates == []
    listing = ok(["scheduled", "list"], env).stdout
    assert "+1415***0199" in listing and "See you tomorrow" in listing
    assert "America/Los_Angeles" in listing
    assert ok(["scheduled", "cancel", "1"], env).stdout.strip() == "#1 cancelled"
    assert "no scheduled messages" in ok(["scheduled", "list"], env).stdout
    assert "cancelled" in ok(["scheduled", "list", "--all"], env).stdout


def test_cancelling_after_it_was_sent_says_so(
    env: dict[str, str], twilio_api: TwilioAPI
) -> None:
    ok(["send", "+14155550199", "now"], env)
    result = invoke(["scheduled", "cancel", "1"], env)
    assert result.exit_code == 1
    assert "#1 not cancelled: it was already sent (SID SM" in result.stderr


def test_scheduled_cancel_of_an_unknown_id(env: dict[str, str], db_path: Path) -> None:
    bad_input(
        invoke(["scheduled", "cancel", "7"], env), "no outbox message #7", db_path
    )


@pytest.mark.parametrize(
    ("when", "phrase"),
    [
        ("yesterday", "in the past"),
        ("2020-01-01T00:00:00+00:00", "in the past"),
        ("in a while", "cannot read"),
        ("+400d", "more than a year ahead"),
    ],
)
def test_send_at_bad_times(
    when: str, phrase: str, env: dict[str, str], db_path: Path
) -> None:
    result = invoke(["send", "+14155550199", "hi", "--at", when], env)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if "Error:" in line]
    assert len(errors) == 1 and phrase in errors[0], result.output
    assert outbox_count(db_path) == 0

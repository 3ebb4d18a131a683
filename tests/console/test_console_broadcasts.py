"""The console's Broadcasts and Scheduled pages over HTTP, on SQLite and
PostgreSQL: counts as ``textwire broadcast status`` has them, pause / resume /
cancel and their refusals (through the command line's rules), a scheduled
message cancelled (or "already sent"), the audit lines, CSRF, escaping, and
the live view's change token."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask

from textwire.broadcast.service import prepare
from textwire.config import Settings
from textwire.service import queue_message
from textwire.storage.sql import SqlStore
from textwire.worker import SendWorker

from ..conftest import TwilioAPI
from .conftest import Operator

ANA = "+14155550199"
XSS = "<img src=x onerror=alert(1)>"
# Four valid rows; one invalid, one duplicate (after normalization), one opted out.
MEMBERS = """phone,first_name
+14155550199,Ana
(415) 555-0142,Bo
+14155550143,Cy
+14155550144,Di
12,Nobody
415-555-0199,Ana again
+14155550133,Opted
"""
INVALID_TO = (400, {"code": 21211, "message": "Invalid 'To' Phone Number"}, {})


def make_broadcast(
    store: SqlStore,
    settings: Settings,
    tmp_path: Path,
    *,
    name: str = "members",
    body: str = "Hi {first_name}!",
    text: str = MEMBERS,
) -> int:
    """A broadcast made the way ``textwire broadcast create`` makes one."""
    with store.begin() as conn:
        store.contacts.set_opt_out(conn, "+14155550133", True, datetime.now(UTC))
    path = tmp_path / f"{name[:20].replace('/', '_')}.csv"
    path.write_text(text, encoding="utf-8")
    draft = prepare(settings, path, body=body, name=name)
    return draft.create(store, draft.preview(store, write_rejects=False))


def counts(html: str) -> dict[str, str]:
    """The ``data-testid="count-…"`` cells of a page, by name."""
    import re

    return dict(re.findall(r'data-testid="count-([a-z-]+)"[^>]*>([^<]*)<', html))


@pytest.fixture
def bid(store: SqlStore, console_settings: Settings, tmp_path: Path) -> int:
    return make_broadcast(store, console_settings, tmp_path)


# -- the pages ---------------------------------------------------------------------


def test_the_nav_links_both_pages(console: Operator) -> None:
    html = console.client.get("/console/").text
    assert 'href="/console/broadcasts"' in html
    assert 'href="/console/scheduled"' in html
    assert console.client.get("/console/broadcasts").status_code == 200
    assert "No broadcasts yet" in console.client.get("/console/broadcasts").text
    assert "Nothing scheduled" in console.client.get("/console/scheduled").text


def test_the_list_shows_every_count_and_the_progress(
    console: Operator,
    store: SqlStore,
    bid: int,
    twilio_api: TwilioAPI,
    send_worker: SendWorker,
) -> None:
    html = console.client.get("/console/broadcasts").text
    assert f'data-broadcast="{bid}" data-state="sending"' in html
    assert ">members</a>" in html
    assert counts(html) == {
        "sent": "0",
        "delivered": "0",
        "failed": "0",
        "waiting": "4",
        "held": "0",
        "cancelled": "0",
        "skipped": "1 · 1 · 1",
    }
    assert 'data-done="0" data-total="4"' in html
    assert 'data-testid="pause"' in html and 'data-testid="cancel"' in html
    # One is refused by Twilio for good; the others sent, one delivered.
    twilio_api.failures.append(INVALID_TO)
    send_worker.run_once()
    sid = next(c["sid"] for c in twilio_api.created)
    store.messages.update_status(
        sid=sid,
        outbox_id=None,
        status="delivered",
        error_code=None,
        error_message=None,
        now=datetime.now(UTC),
    )
    html = console.client.get("/console/broadcasts?fragment=1").text
    assert "<html" not in html  # the fragment alone
    found = counts(html)
    assert (found["sent"], found["delivered"], found["failed"]) == ("3", "1", "1")
    assert found["waiting"] == "0"
    assert 'data-done="4" data-total="4"' in html and "100 %" in html
    assert f'data-broadcast="{bid}" data-state="finished"' in html
    assert 'data-testid="pause"' not in html  # nothing left to pause


def test_one_broadcast_shows_its_rows_and_why_one_failed(
    console: Operator, bid: int, twilio_api: TwilioAPI, send_worker: SendWorker
) -> None:
    twilio_api.failures.append(INVALID_TO)
    send_worker.run_once()
    html = console.client.get(f"/console/broadcasts/{bid}").text
    found = counts(html)
    assert (found["total"], found["sent"], found["failed"]) == ("4", "3", "1")
    assert (found["invalid"], found["duplicates"], found["opted-out"]) == (
        "1",
        "1",
        "1",
    )
    assert html.count('data-testid="broadcast-row"') == 4
    assert "+1 415-555-0199" in html  # in full: an operator is logged in
    failed = console.client.get(f"/console/broadcasts/{bid}?rows=failed").text
    assert failed.count('data-testid="broadcast-row"') == 1
    assert 'data-status="failed"' in failed and "21211" in failed
    assert "Hi {first_name}!" in html  # the template, as written
    missing = console.client.get("/console/broadcasts/999")
    assert missing.status_code == 404 and "no broadcast #999" in missing.text


def test_pause_resume_and_cancel_with_an_audit_line_each(
    console: Operator,
    store: SqlStore,
    bid: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "textwire.audit")
    paused = console.post(f"/console/broadcasts/{bid}/pause", {"back": "list"})
    assert paused.status_code == 303
    assert paused.headers["Location"].startswith("/console/broadcasts?notice=")
    assert store.broadcasts.get(bid)["status"] == "paused"
    page = console.client.get(paused.headers["Location"]).text
    assert f"broadcast #{bid} paused" in page and 'data-testid="resume"' in page
    resumed = console.post_json(f"/console/broadcasts/{bid}/resume")
    assert resumed.status_code == 200
    assert resumed.json == {"ok": True, "message": f"broadcast #{bid} resumed"}
    assert store.broadcasts.get(bid)["status"] == "sending"
    cancelled = console.post(f"/console/broadcasts/{bid}/cancel")
    assert cancelled.headers["Location"].startswith(f"/console/broadcasts/{bid}?")
    assert store.broadcasts.get(bid)["status"] == "cancelled"
    assert store.broadcasts.progress(bid, datetime.now(UTC))["cancelled"] == 4
    lines = [r.message for r in caplog.records if r.name == "textwire.audit"]
    assert lines == [
        f"operator='Sam' pause broadcast={bid} done",
        f"operator='Sam' resume broadcast={bid} done",
        f"operator='Sam' cancel broadcast={bid} done: 4 rows cancelled",
    ]
    assert "+1415" not in caplog.text


@pytest.mark.parametrize(
    ("setup", "action", "message"),
    [
        ("cancel", "resume", "was cancelled: it cannot be resumed"),
        ("cancel", "pause", "is cancelled: only one sending pauses"),
        ("cancel", "cancel", "was cancelled already"),
        ("pause", "pause", "is paused already"),
        (None, "resume", "is sending already"),
    ],
)
def test_a_transition_not_allowed_is_refused_with_why(
    console: Operator,
    store: SqlStore,
    bid: int,
    caplog: pytest.LogCaptureFixture,
    setup: str | None,
    action: str,
    message: str,
) -> None:
    if setup:
        assert (
            console.post_json(f"/console/broadcasts/{bid}/{setup}").status_code == 200
        )
    before = store.broadcasts.get(bid)["status"]
    caplog.set_level(logging.INFO, "textwire.audit")
    refused = console.post_json(f"/console/broadcasts/{bid}/{action}")
    assert refused.status_code == 409
    assert refused.json == {"ok": False, "message": f"broadcast #{bid} {message}"}
    assert store.broadcasts.get(bid)["status"] == before
    (line,) = [r.message for r in caplog.records if r.name == "textwire.audit"]
    assert line.startswith(f"operator='Sam' {action} broadcast={bid} ")
    # A form post shows the same words on the page it goes back to.
    page = console.post(f"/console/broadcasts/{bid}/{action}", follow_redirects=True)
    assert message in page.text


def test_resuming_an_unfinished_import_points_to_the_command_line(
    console: Operator, store: SqlStore
) -> None:
    bid = store.broadcasts.create(
        now=datetime.now(UTC),
        name="cut short",
        source_path="/nowhere.csv",
        source_sha256="0" * 64,
        body="Hi",
        media=[],
        number_column="phone",
        region="US",
    )
    refused = console.post_json(f"/console/broadcasts/{bid}/resume")
    assert refused.status_code == 409
    assert f"`textwire broadcast resume {bid}`" in refused.json["message"]
    html = console.client.get("/console/broadcasts").text
    assert f'data-broadcast="{bid}" data-state="importing"' in html
    assert console.post_json(f"/console/broadcasts/{bid}/cancel").status_code == 200


def test_an_unknown_broadcast_is_404(console: Operator) -> None:
    for action in ("pause", "resume", "cancel"):
        response = console.post_json(f"/console/broadcasts/42/{action}")
        assert response.status_code == 404
        assert "no broadcast #42" in response.json["message"]


def test_actions_need_the_csrf_token_and_a_login(
    console_app: Flask, console: Operator, store: SqlStore, bid: int
) -> None:
    bare = console.client.post(f"/console/broadcasts/{bid}/pause")
    forged = console.client.post(
        f"/console/broadcasts/{bid}/pause", data={"csrf_token": "forged"}
    )
    assert (bare.status_code, forged.status_code) == (403, 403)
    stranger = console_app.test_client()
    assert stranger.get("/console/broadcasts").status_code == 302  # to the login
    page = stranger.get("/console/login").text
    from .conftest import csrf_of

    token = csrf_of(page)
    refused = stranger.post(
        f"/console/broadcasts/{bid}/cancel", data={"csrf_token": token}
    )
    assert refused.status_code == 401
    gone = stranger.post("/console/scheduled/1/cancel", data={"csrf_token": token})
    assert gone.status_code == 401
    assert store.broadcasts.get(bid)["status"] == "sending"


def test_a_broadcast_name_and_body_are_shown_as_text(
    console: Operator, store: SqlStore, console_settings: Settings, tmp_path: Path
) -> None:
    bid = make_broadcast(
        store, console_settings, tmp_path, name=XSS, body=XSS + " {first_name}"
    )
    for path in ("/console/broadcasts", f"/console/broadcasts/{bid}"):
        html = console.client.get(path).text
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
        assert "<img src=x" not in html


# -- scheduled messages -------------------------------------------------------------


def test_the_scheduled_page_and_cancelling_one(
    console: Operator,
    store: SqlStore,
    console_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    at = datetime(2031, 1, 15, 17, 0, tzinfo=UTC)
    now = at - timedelta(days=2)
    (row,) = queue_message(
        store, to=ANA, body=XSS + " see you", settings=console_settings, at=at, now=now
    )
    html = console.client.get("/console/scheduled").text
    assert f'data-row="{row}" data-status="queued"' in html
    assert "+1 415-555-0199" in html  # in full to a logged-in operator
    assert "2031-01-15 17:00:00 UTC" in html
    assert "Wed 09:00 America/Los_Angeles" in html  # the recipient's clock
    assert "&lt;img src=x onerror=alert(1)&gt; see you" in html
    assert "<img src=x" not in html
    caplog.set_level(logging.INFO, "textwire.audit")
    done = console.post(f"/console/scheduled/{row}/cancel", follow_redirects=True)
    assert f"Message #{row} cancelled" in done.text
    assert "Nothing scheduled" in done.text
    entry = store.outbox.row(row)
    assert entry is not None and entry["status"] == "cancelled"
    (line,) = [r.message for r in caplog.records if r.name == "textwire.audit"]
    assert line == f"operator='Sam' cancel scheduled outbox={row} cancelled"


def test_cancelling_one_already_sent_says_so(
    console: Operator,
    store: SqlStore,
    console_settings: Settings,
    twilio_api: TwilioAPI,
    send_worker: SendWorker,
) -> None:
    now = datetime.now(UTC)
    (row,) = queue_message(
        store,
        to=ANA,
        body="Reminder",
        settings=console_settings,
        at=now + timedelta(hours=1),
    )
    send_worker.run_once(now=now + timedelta(hours=2))
    refused = console.post_json(f"/console/scheduled/{row}/cancel")
    assert refused.status_code == 409
    assert refused.json["state"] == "sent"
    assert "already sent (SID SM" in refused.json["message"]
    page = console.post(f"/console/scheduled/{row}/cancel", follow_redirects=True)
    assert "not cancelled: it was already sent" in page.text
    assert len(twilio_api.creates) == 1
    unknown = console.post_json("/console/scheduled/999/cancel")
    assert unknown.status_code == 404


def test_a_message_held_for_quiet_hours_says_until_when(
    console: Operator,
    store: SqlStore,
    console_settings: Settings,
    send_worker: SendWorker,
) -> None:
    # 23:00 in San Francisco is inside 21:00-09:00: held until 09:00 there.
    settings = console_settings.replace(quiet_hours="21:00-09:00")
    at = datetime(2031, 1, 16, 7, 0, tzinfo=UTC)
    (row,) = queue_message(
        store,
        to=ANA,
        body="Late",
        settings=settings,
        at=at,
        now=at - timedelta(hours=1),
    )
    send_worker.run_once(now=at)
    html = console.client.get("/console/scheduled").text
    assert f'data-row="{row}" data-status="held"' in html
    assert "quiet hours: held until 2031-01-16 17:00:00 UTC" in html
    assert 'data-testid="cancel"' in html


# -- live updates -------------------------------------------------------------------


def test_the_change_token_moves_with_a_pause_a_send_and_a_schedule(
    store: SqlStore, bid: int, console_settings: Settings, send_worker: SendWorker
) -> None:
    def tokens() -> tuple[str, str]:
        return store.console.version("broadcasts"), store.console.version("scheduled")

    first = tokens()
    store.broadcasts.move(bid, "paused", only_from=("sending",), now=datetime.now(UTC))
    paused = tokens()
    assert paused[0] != first[0]
    store.broadcasts.move(bid, "sending", only_from=("paused",), now=datetime.now(UTC))
    send_worker.run_once()
    sent = tokens()
    assert sent[0] != paused[0] and sent[1] != paused[1]
    queue_message(
        store,
        to=ANA,
        body="later",
        settings=console_settings,
        at=datetime.now(UTC) + timedelta(hours=3),
    )
    assert tokens()[1] != sent[1]


def test_the_stream_cap_holds_for_these_pages(
    console_app: Flask, console: Operator
) -> None:
    console_app.extensions["textwire_console"].max_streams = 0
    for view in ("broadcasts", "scheduled"):
        response = console.client.get(f"/console/events?view={view}")
        assert response.status_code == 503

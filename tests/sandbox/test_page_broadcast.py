"""The phone page's scheduled messages and broadcasts: the JSON endpoints
through Flask's test client, and in a real browser a scheduled message shown
as "scheduled for …" until it arrives, and a broadcast to the virtual phones
from the example CSV."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from playwright.sync_api import expect

from tests.sandbox.browser_fixtures import (
    SANDBOX_NUMBER,
    UK_PHONE,
    US_PHONE,
    browser,
    page,
    page_errors,
    replies_to,
    sandbox,
    sandbox_settings,
    wait_for,
)
from textwire.sandbox.app import Sandbox, create_sandbox

__all__ = ["browser", "page", "page_errors", "sandbox"]  # fixtures, used by name

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "broadcast.csv"


@pytest.fixture
def box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """A sandbox with the bot, not served: the page's endpoints alone."""
    monkeypatch.chdir(tmp_path)  # uploaded lists are kept under .textwire/
    made = create_sandbox(sandbox_settings(tmp_path), port=8124, step_delay=0)
    yield made
    made.stop()


@pytest.fixture
def client(box: Sandbox) -> FlaskClient:
    return box.app.test_client()


def schedule(box: Sandbox, to: str, body: str, at: datetime) -> int:
    assert box.store is not None
    with box.store.begin() as conn:
        return box.store.outbox.enqueue(
            conn,
            to=to,
            body=body,
            media=(),
            from_=SANDBOX_NUMBER,
            messaging_service_sid=None,
            now=datetime.now(UTC),
            send_at=at,
        )


def post_list(client: FlaskClient, data: bytes, **form: str) -> Any:
    fields: dict[str, Any] = {"csv": (io.BytesIO(data), "list.csv"), **form}
    return client.post(
        "/sandbox/api/broadcasts", data=fields, content_type="multipart/form-data"
    )


def test_a_phone_lists_the_bots_messages_that_wait(
    client: FlaskClient, box: Sandbox
) -> None:
    at = datetime.now(UTC) + timedelta(hours=2)
    outbox_id = schedule(box, US_PHONE, "Your visit is tomorrow", at)
    [entry] = client.get(f"/sandbox/api/phones/{US_PHONE}/scheduled").json["scheduled"]
    assert entry["id"] == outbox_id and entry["body"] == "Your visit is tomorrow"
    assert datetime.fromisoformat(entry["send_at"]) == at.replace(microsecond=0) or (
        abs(datetime.fromisoformat(entry["send_at"]) - at) < timedelta(seconds=1)
    )
    assert client.get(f"/sandbox/api/phones/{UK_PHONE}/scheduled").json == {
        "scheduled": []
    }


def test_a_broadcast_preview_queues_nothing_then_send_queues_it(
    client: FlaskClient, box: Sandbox
) -> None:
    assert box.store is not None
    preview = post_list(client, EXAMPLE.read_bytes(), body="Hi {first_name}")
    assert preview.status_code == 200, preview.json
    data = preview.json
    assert (data["rows"], data["valid"], data["invalid"], data["duplicates"]) == (
        8,
        6,
        1,
        1,
    )
    assert data["id"] is None and store_rows(box) == 0
    assert data["samples"][0]["to"] == "+1415***0199"
    sent = post_list(client, EXAMPLE.read_bytes(), body="Hi {first_name}", send="1")
    assert sent.status_code == 201 and sent.json["id"] == 1
    assert store_rows(box) == 6


def store_rows(box: Sandbox) -> int:
    assert box.store is not None
    return int(box.store.broadcasts.progress(1, datetime.now(UTC))["total"])


@pytest.mark.parametrize(
    ("data", "form", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00", {"body": "Hi"}, "not a CSV file"),
        (b"name\nAna\n", {"body": "Hi"}, "no number column"),
        (b"phone\n+14155550199\n", {"body": "Hi {first_name"}, "syntax error"),
        (b"phone\n+14155550199\n", {"body": "Hi", "at": "yesterday"}, "in the past"),
    ],
)
def test_bad_lists_are_refused(
    client: FlaskClient, data: bytes, form: dict[str, str], message: str
) -> None:
    response = post_list(client, data, **form)
    assert response.status_code == 400
    assert message in response.json["error"]


# -- in a browser ----------------------------------------------------------------------


def test_a_scheduled_message_shows_until_it_arrives(
    sandbox: Sandbox, page: Any
) -> None:
    outbox_id = schedule(
        sandbox, US_PHONE, "See you at 3", datetime.now(UTC) + timedelta(days=1)
    )
    page.goto(sandbox.url + "/")
    page.get_by_test_id(f"phone-{US_PHONE}").click()
    waiting = page.get_by_test_id("scheduled-message")
    expect(waiting).to_have_count(1)
    expect(waiting).to_contain_text("See you at 3")
    expect(waiting.get_by_test_id("scheduled-for")).to_contain_text("scheduled for")
    # Its time comes: the worker sends it and the page shows it as a message.
    assert sandbox.store is not None
    with sandbox.store.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE outbox SET send_at = created_at, next_attempt_at = created_at "
            f"WHERE id = {outbox_id}"
        )
    assert sandbox.worker is not None
    sandbox.worker.wake_sender()
    expect(page.get_by_test_id("received-message")).to_contain_text(
        "See you at 3", timeout=15_000
    )
    expect(waiting).to_have_count(0, timeout=15_000)


def test_a_broadcast_from_the_example_list_reaches_the_phones(
    sandbox: Sandbox, page: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    page.goto(sandbox.url + "/")
    page.locator("#broadcast-panel summary").click()
    page.get_by_test_id("broadcast-csv").set_input_files(str(EXAMPLE))
    page.get_by_test_id("broadcast-body").fill("Hi {first_name}, see you {appointment}")
    page.get_by_test_id("broadcast-preview").click()
    result = page.get_by_test_id("broadcast-result")
    expect(result).to_contain_text("8 rows: 6 valid, 1 invalid, 1 duplicates")
    page.get_by_test_id("broadcast-send").click()
    expect(result).to_have_attribute("data-state", "queued")
    wait_for(
        lambda: any(
            "Hi Chloe, see you Wednesday 09:00" in m.body
            for m in replies_to(sandbox, UK_PHONE)
        ),
        timeout=30,
        what="the broadcast to reach Chloe's phone",
    )
    page.get_by_test_id(f"phone-{UK_PHONE}").click()
    expect(page.get_by_test_id("received-message")).to_contain_text("Hi Chloe")

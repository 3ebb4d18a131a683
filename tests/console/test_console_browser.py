"""The operator console in a real browser (Playwright driving the system's
Chromium) against a real sandbox: the help-desk bot, its worker, the
emulator and the carrier over HTTP, and the console's live updates."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from textwire.broadcast.service import prepare
from textwire.examples import helpdesk
from textwire.examples.helpdesk import HANDED_OFF
from textwire.sandbox.api import Faults
from textwire.sandbox.app import Sandbox
from textwire.service import queue_message

from ..conditions import wait_until
from ..sandbox.browser_fixtures import (
    SANDBOX_NUMBER,
    UK_PHONE,
    US_PHONE,
    PageErrors,
    browser,
    page,
    page_errors,
    replies_to,
    sandbox_settings,
    serve_sandbox,
    tiny_png,
)

__all__ = ["browser", "page", "page_errors"]  # fixtures, used by name

PASSWORD = "sandbox-console-pw"
PHOTO = Path(helpdesk.__file__).parent / "media" / "helpdesk.png"
XSS = "<img src=x onerror=alert(1)>"
EXAMPLE_CSV = Path(__file__).parents[2] / "examples" / "broadcast.csv"


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def desk(tmp_path: Path, faults: Faults) -> Iterator[Sandbox]:
    """A sandbox with a known console password and quick live updates."""
    settings = sandbox_settings(
        tmp_path,
        console_password=PASSWORD,
        max_send_attempts=2,
        backoff_base=0.2,
        backoff_cap=0.5,
    )
    with serve_sandbox(tmp_path, settings, faults=faults) as box:
        box.app.extensions["textwire_console"].poll = 0.1
        yield box


def log_in(page: Any, box: Sandbox, *, name: str = "Sam") -> None:
    page.goto(box.url + "/console/")
    expect(page).to_have_url(box.url + "/console/login?next=/console/")
    page.locator("#name").fill(name)
    page.locator("#password").fill(PASSWORD)
    page.locator("#login").click()
    expect(page.get_by_test_id("operator")).to_have_text(name)


def text_from(box: Sandbox, phone: str, body: str, files: Any = ()) -> None:
    box.carrier.send_from_phone(phone, box.number, body, list(files))


def all_handled(box: Sandbox) -> bool:
    assert box.store is not None
    return all(row["status"] == "done" for row in box.store.inbox.rows())


def open_conversation(page: Any, number_text: str) -> None:
    page.get_by_test_id("conversation").filter(has_text=number_text).locator(
        "a"
    ).click()
    expect(page.get_by_test_id("contact-number")).to_have_text(number_text)
    expect(page.locator("#live")).to_have_attribute("data-state", "on")


def test_login_refuses_a_wrong_password_and_locks_out_after_five(
    desk: Sandbox, page: Any
) -> None:
    page.goto(desk.url + "/console/")
    for attempt in range(5):
        page.locator("#name").fill("Mallory")
        page.locator("#password").fill(f"guess-{attempt}")
        page.locator("#login").click()
        expect(page.get_by_test_id("login-error")).to_have_text("Wrong password.")
    # The sixth try, even with the right password, is refused.
    page.locator("#name").fill("Mallory")
    page.locator("#password").fill(PASSWORD)
    page.locator("#login").click()
    expect(page.get_by_test_id("login-error")).to_contain_text("Too many tries")
    page.goto(desk.url + "/console/outbox")
    expect(page.locator("#login")).to_be_visible()  # still not logged in


def test_the_conversation_list_updates_live_when_a_webhook_arrives(
    desk: Sandbox, page: Any
) -> None:
    log_in(page, desk)
    expect(page.get_by_test_id("no-conversations")).to_be_visible()
    expect(page.locator("#live")).to_have_attribute("data-state", "on")
    page.evaluate("() => { window.notReloaded = true; }")
    text_from(desk, US_PHONE, "hello from Ana")
    row = page.get_by_test_id("conversation")
    expect(row).to_have_count(1, timeout=15_000)
    expect(row.get_by_test_id("number")).to_have_text("+1 415-555-0199")
    # The bot's menu answer arrives after it: the list follows.
    expect(row.get_by_test_id("snippet")).to_contain_text(
        "Help desk menu", timeout=15_000
    )
    text_from(desk, UK_PHONE, "hi from London")
    expect(page.get_by_test_id("conversation")).to_have_count(2, timeout=15_000)
    assert page.evaluate("() => window.notReloaded === true")  # no reload


def test_with_no_stream_to_spare_the_list_polls_instead(
    desk: Sandbox, page: Any
) -> None:
    desk.app.extensions["textwire_console"].max_streams = 0
    log_in(page, desk)
    expect(page.locator("#live")).to_have_attribute("data-state", "polling")
    text_from(desk, US_PHONE, "hello while polling")
    expect(page.get_by_test_id("conversation")).to_have_count(1, timeout=20_000)


def test_an_operator_reply_reaches_the_emulator_as_one_message(
    desk: Sandbox, page: Any
) -> None:
    text_from(desk, US_PHONE, "can a person help?")
    wait_until(lambda: replies_to(desk, US_PHONE), "the bot's menu reply")
    log_in(page, desk)
    open_conversation(page, "+1 415-555-0199")
    counter = page.locator("#counter")
    page.locator("#body").fill("Hi Ana, Sam here 😀")
    expect(counter).to_contain_text("UCS-2")
    page.locator("#body").fill("Hi Ana, Sam here. Here is our logo.")
    expect(counter).to_have_text("GSM-7 · 35/160 · 1 segment")
    page.locator(".media-urls summary").click()
    page.locator("#media").fill(desk.url + "/media/logo.png")
    page.locator("#send").click()
    expect(page.locator("#body")).to_have_value("")
    mine = page.get_by_test_id("outbound").filter(has_text="Sam here")
    expect(mine).to_have_count(1)
    expect(mine.get_by_test_id("author")).to_have_text("by Sam")
    expect(mine.get_by_test_id("status")).to_have_attribute(
        "data-status", "delivered", timeout=15_000
    )
    sent = [m for m in replies_to(desk, US_PHONE) if "Sam here" in m.body]
    assert len(sent) == 1
    (message,) = sent
    assert message.to == US_PHONE and message.from_ == SANDBOX_NUMBER
    assert [m.url for m in message.media] == [desk.url + "/media/logo.png"]
    expect(mine.get_by_test_id("segments")).to_have_text("1 segment · GSM-7")


def test_handoff_silences_the_bot_and_back_to_the_bot_restores_it(
    desk: Sandbox, page: Any
) -> None:
    text_from(desk, US_PHONE, "agent")
    wait_until(
        lambda: any(m.body == HANDED_OFF for m in replies_to(desk, US_PHONE)),
        "the bot handing off",
    )
    log_in(page, desk)
    row = page.get_by_test_id("conversation")
    expect(row.get_by_test_id("with-person")).to_be_visible()
    # While with a person the bot answers nothing; the message waits.
    text_from(desk, US_PHONE, "help")
    expect(row.get_by_test_id("waiting")).to_be_visible(timeout=15_000)
    wait_until(lambda: all_handled(desk), "the inbox handled")
    assert [m.body for m in replies_to(desk, US_PHONE)] == [HANDED_OFF]
    open_conversation(page, "+1 415-555-0199")
    expect(page.get_by_test_id("handoff-state")).to_have_text("with a person")
    expect(page.get_by_test_id("handoff-note")).to_have_text("asked for a person")
    page.locator("#release").click()
    expect(page.get_by_test_id("handoff-state")).to_have_text("the bot")
    text_from(desk, US_PHONE, "hours")
    wait_until(
        lambda: any("Monday" in m.body for m in replies_to(desk, US_PHONE)),
        "the bot answering again",
    )
    expect(page.get_by_test_id("outbound").filter(has_text="Monday")).to_have_count(
        1, timeout=15_000
    )


def test_retry_of_a_failed_row(desk: Sandbox, faults: Faults, page: Any) -> None:
    text_from(desk, US_PHONE, "hello")
    wait_until(lambda: replies_to(desk, US_PHONE), "the bot's menu reply")
    log_in(page, desk)
    open_conversation(page, "+1 415-555-0199")
    # Twilio answers every create with a 500 until the reply has failed.
    faults.error_500_rate = 1.0
    page.locator("#body").fill("Your parcel is on its way")
    page.locator("#send").click()
    mine = page.get_by_test_id("outbound").filter(has_text="parcel")
    expect(mine.get_by_test_id("status")).to_have_attribute(
        "data-status", "failed", timeout=20_000
    )
    expect(mine.get_by_test_id("why")).to_contain_text("20500")
    faults.error_500_rate = 0.0
    page.get_by_role("link", name="Outbox").click()
    failed = page.locator('[data-testid="outbox-row"][data-status="failed"]')
    expect(failed).to_have_count(1)
    failed.get_by_test_id("retry").click()
    expect(page.get_by_test_id("notice")).to_contain_text("looked up at Twilio first")
    expect(page.get_by_test_id("outbox-empty")).to_be_visible(timeout=15_000)
    page.get_by_role("link", name="Conversations").click()
    open_conversation(page, "+1 415-555-0199")
    expect(
        page.get_by_test_id("outbound")
        .filter(has_text="parcel")
        .get_by_test_id("status")
    ).to_have_attribute("data-status", "delivered", timeout=15_000)
    assert [m.body for m in replies_to(desk, US_PHONE)].count(
        "Your parcel is on its way"
    ) == 1


def test_an_xss_body_is_shown_as_text(desk: Sandbox, page: Any) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    log_in(page, desk)
    text_from(desk, US_PHONE, XSS)
    expect(page.get_by_test_id("conversation")).to_have_count(1, timeout=15_000)
    # Searching for its text shows the message itself in the list.
    page.locator("#q").fill("onerror")
    page.locator("#q").press("Enter")
    row = page.get_by_test_id("conversation")
    expect(row.get_by_test_id("snippet")).to_contain_text(XSS)
    open_conversation(page, "+1 415-555-0199")
    bubble = page.get_by_test_id("inbound").filter(has_text="onerror")
    expect(bubble.get_by_test_id("body")).to_have_text(XSS)
    assert bubble.locator("img").count() == 0
    assert page.locator("img[src=x]").count() == 0
    assert dialogs == []


def test_a_post_without_the_csrf_token_is_refused(desk: Sandbox, page: Any) -> None:
    text_from(desk, US_PHONE, "hello")
    wait_until(lambda: replies_to(desk, US_PHONE), "the bot's menu reply")
    log_in(page, desk)
    open_conversation(page, "+1 415-555-0199")
    action = page.locator("#composer").get_attribute("action")
    statuses = page.evaluate(
        """async (action) => {
          const bare = await fetch(action, {method: "POST",
            body: new URLSearchParams({body: "sneaky"})});
          const wrong = await fetch(action, {method: "POST",
            headers: {"X-CSRF-Token": "forged"},
            body: new URLSearchParams({body: "sneaky", csrf_token: "forged"})});
          return [bare.status, wrong.status];
        }""",
        action,
    )
    assert statuses == [403, 403]
    assert not any("sneaky" in m.body for m in replies_to(desk, US_PHONE))


def test_a_ticket_photo_is_kept_and_shown_in_the_console(
    desk: Sandbox, page: Any, tmp_path: Path
) -> None:
    text_from(desk, US_PHONE, "ticket")
    wait_until(lambda: replies_to(desk, US_PHONE), "the ticket prompt")
    text_from(desk, US_PHONE, "The printer jams", [(tiny_png(6, 6), "image/png")])
    wait_until(
        lambda: any("with your photo" in m.body for m in replies_to(desk, US_PHONE)),
        "the ticket opened with its photo",
    )
    kept = list((tmp_path / "media").glob("MM*/0"))
    assert len(kept) == 1 and kept[0].read_bytes() == tiny_png(6, 6)
    log_in(page, desk)
    open_conversation(page, "+1 415-555-0199")
    picture = (
        page.get_by_test_id("inbound")
        .filter(has_text="printer")
        .get_by_test_id("media")
    )
    expect(picture).to_have_count(1)
    page.wait_for_function(
        "(img) => img.complete && img.naturalWidth === 6", arg=picture.element_handle()
    )


def test_screenshot_of_a_conversation(
    desk: Sandbox, browser: Any, page_errors: PageErrors, tmp_path: Path
) -> None:
    """``TEXTWIRE_SCREENSHOT_DIR=docs`` keeps it as docs/console.png."""
    text_from(desk, UK_PHONE, "Is the shop open on Saturday?")
    text_from(desk, "+4915123456789", "hours")
    text_from(desk, US_PHONE, "ticket")
    wait_until(lambda: len(replies_to(desk, US_PHONE)) == 1, "the ticket prompt")
    text_from(
        desk,
        US_PHONE,
        "URGENT: the printer in room 4 jams on every page",
        [(PHOTO.read_bytes(), "image/png")],
    )
    wait_until(lambda: len(replies_to(desk, US_PHONE)) == 2, "the urgent ticket")
    wait_until(lambda: all_handled(desk), "every message handled")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        tab = context.new_page()
        tab.on("pageerror", lambda exc: page_errors.append(str(exc)))
        log_in(tab, desk, name="Sam")
        open_conversation(tab, "+1 415-555-0199")
        tab.locator("#body").fill(
            "Hi Ana, Sam from the help desk. A technician is on the way."
        )
        tab.locator("#send").click()
        mine = tab.get_by_test_id("outbound").filter(has_text="technician")
        expect(mine.get_by_test_id("status")).to_have_attribute(
            "data-status", "delivered", timeout=15_000
        )
        tab.locator("#body").fill("Thanks 😀")
        expect(tab.locator("#counter")).to_contain_text("UCS-2")
        tab.wait_for_function(
            "() => [...document.querySelectorAll('img')].every("
            "(i) => i.complete && i.naturalWidth > 0)"
        )
        width = tab.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 1280
        shot = tmp_path / "console.png"
        tab.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        keep = os.environ.get("TEXTWIRE_SCREENSHOT_DIR")
        if keep:
            shutil.copyfile(shot, Path(keep) / "console.png")
    finally:
        context.close()
    assert not page_errors, page_errors


def test_a_broadcast_watched_paused_resumed_and_a_scheduled_message_cancelled(
    tmp_path: Path, faults: Faults, page: Any
) -> None:
    """A broadcast made as ``textwire broadcast create`` makes one (named
    like an XSS attempt, shown as text), watched
    live at the sender's pace (one message every 2 s), paused, a cancel
    thought better of, resumed to the end; then a scheduled message cancelled."""
    settings = sandbox_settings(tmp_path, console_password=PASSWORD, rate_limit_mps=0.5)
    with serve_sandbox(tmp_path, settings, faults=faults) as box:
        box.app.extensions["textwire_console"].poll = 0.1
        store = box.store
        assert store is not None
        dialogs: list[str] = []  # an unescaped name would alert() here too
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        log_in(page, box)
        page.get_by_role("link", name="Broadcasts").click()
        expect(page.get_by_test_id("no-broadcasts")).to_be_visible()
        expect(page.locator("#live")).to_have_attribute("data-state", "on")
        members = tmp_path / "members.csv"
        shutil.copyfile(EXAMPLE_CSV, members)
        draft = prepare(box.settings, members, body="Hi {first_name}!", name=XSS)
        bid = draft.create(store, draft.preview(store, write_rejects=False))
        row = page.get_by_test_id("broadcast")
        expect(row).to_have_count(1, timeout=15_000)  # live: no reload
        expect(row.get_by_test_id("broadcast-name")).to_have_text(XSS)
        bar = row.get_by_test_id("progress")
        expect(bar).to_have_attribute("data-total", "6")
        expect(bar).not_to_have_attribute("data-done", "0", timeout=20_000)
        row.get_by_test_id("pause").click()
        expect(page.get_by_test_id("notice")).to_have_text(f"broadcast #{bid} paused")
        expect(row).to_have_attribute("data-state", "paused")
        wait_until(
            lambda: in_flight(store, bid) == 0, "the rows on their way to finish"
        )
        done = int(bar.get_attribute("data-done") or 0)
        assert 0 < done < 6
        # Cancel asks first; saying no leaves it paused.
        row.get_by_test_id("cancel").click()
        expect(row).to_have_attribute("data-state", "paused")
        assert [d.split("?")[0] for d in dialogs] == [
            "Cancel every message of this broadcast not sent yet"
        ]
        row.get_by_test_id("resume").click()
        expect(page.get_by_test_id("notice")).to_have_text(f"broadcast #{bid} resumed")
        expect(row).to_have_attribute("data-state", "finished", timeout=30_000)
        expect(bar).to_have_attribute("data-done", "6")
        expect(row.get_by_test_id("count-sent")).to_have_text("6")
        for phone in (US_PHONE, UK_PHONE):
            assert [m.body for m in replies_to(box, phone)] == [
                f"Hi {'Ana' if phone == US_PHONE else 'Chloe'}!"
            ]
        (outbox_id,) = queue_message(
            store,
            to=US_PHONE,
            body="Your visit is tomorrow",
            settings=box.settings,
            at="+2h",
        )
        page.get_by_role("link", name="Scheduled").click()
        scheduled = page.get_by_test_id("scheduled-row")
        expect(scheduled).to_have_attribute("data-row", str(outbox_id))
        expect(scheduled.get_by_test_id("to")).to_have_text("+1 415-555-0199")
        expect(scheduled.get_by_test_id("local-time")).to_contain_text(
            "America/Los_Angeles"
        )
        scheduled.get_by_test_id("cancel").click()
        expect(page.get_by_test_id("notice")).to_contain_text(
            f"Message #{outbox_id} cancelled"
        )
        expect(page.get_by_test_id("no-scheduled")).to_be_visible()
        entry = store.outbox.row(outbox_id)
        assert entry is not None and entry["status"] == "cancelled"
        assert len(dialogs) == 1


def in_flight(store: Any, broadcast_id: int) -> int:
    p = store.broadcasts.progress(broadcast_id, datetime.now(UTC))
    return int(p["sending"] + p["unknown"])

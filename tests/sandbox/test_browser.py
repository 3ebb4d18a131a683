"""The phone page in a real browser (Playwright driving the system's Chromium)
against a real sandbox: the help-desk bot, its real TwilioTransport, the
emulator and the carrier, all over HTTP on one port."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.sandbox.browser_fixtures import (
    NATIONAL_PHONE,
    OFF_PHONE,
    UK_PHONE,
    US_PHONE,
    PageErrors,
    browser,
    page,
    page_errors,
    replies_to,
    sandbox,
    sandbox_settings,
    serve_sandbox,
    tiny_png,
)
from textwire.sandbox.app import Sandbox

__all__ = ["browser", "page", "page_errors", "sandbox"]  # fixtures, used by name

HELP_TEXT = "Hi from the textwire help desk!"

# Both pictures of a bubble are loaded and have a size.
IMAGES_LOADED = """(sid) => {
  const imgs = [...document.querySelectorAll(`.row[data-sid="${sid}"] img.media`)];
  return imgs.length === 2 && imgs.every((i) => i.complete && i.naturalWidth > 0);
}"""


def open_phone(page: Any, box: Sandbox, phone: str) -> None:
    page.goto(box.url + "/")
    page.get_by_test_id(f"phone-{phone}").click()
    expect(page.get_by_test_id(f"phone-{phone}")).to_have_attribute(
        "aria-selected", "true"
    )
    expect(page.locator("#live")).to_have_attribute("data-state", "on")


def send(page: Any, text: str) -> None:
    page.locator("#body").fill(text)
    page.locator("#send").click()
    expect(page.locator("#body")).to_have_value("")


def reply_bubbles(page: Any) -> Any:
    return page.get_by_test_id("received-message")


def test_help_reply_shows_text_both_pictures_and_delivery(
    sandbox: Sandbox, page: Any
) -> None:
    open_phone(page, sandbox, US_PHONE)
    page.locator("#body").fill("help")
    page.locator("#body").press("Enter")

    sent = page.get_by_test_id("sent-message")
    expect(sent).to_have_count(1)
    expect(sent).to_contain_text("help")
    reply = reply_bubbles(page)
    expect(reply).to_have_count(1, timeout=10_000)
    expect(reply).to_contain_text(HELP_TEXT)
    sid = reply.get_attribute("data-sid")
    assert sid and sid.startswith("MM")
    page.wait_for_function(IMAGES_LOADED, arg=sid, timeout=10_000)
    sizes = page.evaluate(
        "(sid) => [...document.querySelectorAll(`.row[data-sid='${sid}'] img`)]"
        ".map((i) => [i.naturalWidth, i.src])",
        sid,
    )
    assert [src.rsplit("/", 1)[1] for _, src in sizes] == ["logo.png", "helpdesk.png"]
    assert all(width > 0 for width, _ in sizes)
    expect(reply.get_by_test_id("status")).to_have_attribute(
        "data-status", "delivered", timeout=10_000
    )

    # One message to the right number, with both pictures: the point of it all.
    (message,) = replies_to(sandbox, US_PHONE)
    assert message.to == US_PHONE
    assert len(message.media) == 2


def test_national_format_phone_gets_its_reply_on_the_same_thread(
    sandbox: Sandbox, page: Any
) -> None:
    open_phone(page, sandbox, NATIONAL_PHONE)
    tabs_before = page.locator("#phones .phone").count()
    send(page, "help")

    reply = reply_bubbles(page)
    expect(reply).to_contain_text(HELP_TEXT, timeout=10_000)
    expect(page.get_by_test_id("sent-message")).to_have_count(1)
    expect(reply.get_by_test_id("status")).to_have_attribute("data-status", "delivered")
    # The reply went to the E.164 number, not to "(415) 555-0142" or a new phone.
    assert [m.to for m in replies_to(sandbox, NATIONAL_PHONE)] == [NATIONAL_PHONE]
    assert page.locator("#phones .phone").count() == tabs_before
    # And no other phone's tab shows an unread reply.
    expect(page.locator("#phones .badge")).to_have_count(0)


def test_segment_counter_flips_to_ucs2_for_an_emoji(
    sandbox: Sandbox, page: Any
) -> None:
    open_phone(page, sandbox, US_PHONE)
    counter = page.locator("#counter")
    page.locator("#body").fill("hello")
    expect(counter).to_have_text("GSM-7 · 5/160 · 1 segment")
    page.locator("#body").press_sequentially("😀")
    expect(counter).to_have_attribute("data-encoding", "UCS-2")
    expect(counter).to_contain_text("UCS-2 · 7/70 · 1 segment")
    expect(counter).to_contain_text("😀")
    page.locator("#body").fill("x" * 161)
    expect(counter).to_have_text("GSM-7 · 161/306 · 2 segments")


def test_sending_a_picture_gets_the_bots_acknowledgement(
    sandbox: Sandbox, page: Any
) -> None:
    open_phone(page, sandbox, US_PHONE)
    page.locator("#picture").set_input_files(
        files=[{"name": "dot.png", "mimeType": "image/png", "buffer": tiny_png()}]
    )
    expect(page.get_by_test_id("attachment")).to_have_count(1)
    page.locator("#send").click()

    sent = page.get_by_test_id("sent-message")
    expect(sent).to_have_count(1)
    expect(sent.locator("img.media")).to_have_count(1)
    page.wait_for_function(
        "() => { const i = document.querySelector('.row.mine img.media');"
        " return i && i.complete && i.naturalWidth === 2; }"
    )
    expect(reply_bubbles(page)).to_contain_text(
        "Thanks for the picture!", timeout=10_000
    )
    expect(page.get_by_test_id("attachment")).to_have_count(0)


def test_uk_phone_gets_the_pictures_as_links(sandbox: Sandbox, page: Any) -> None:
    """No MMS to the UK: textwire's default policy sends the pictures as links."""
    open_phone(page, sandbox, UK_PHONE)
    send(page, "help")
    reply = reply_bubbles(page)
    expect(reply).to_contain_text(HELP_TEXT, timeout=10_000)
    expect(reply.locator("a[href$='/media/logo.png']")).to_have_count(1)
    expect(reply.locator("img")).to_have_count(0)
    expect(reply.get_by_test_id("status")).to_have_attribute("data-status", "delivered")


def test_pictures_to_a_phone_without_mms_fail_with_30011(
    tmp_path: Path, page: Any
) -> None:
    """Told to send MMS anyway, the carrier reports what Twilio would: 30011."""
    settings = sandbox_settings(tmp_path, mms_fallback="send")
    with serve_sandbox(tmp_path, settings) as box:
        open_phone(page, box, UK_PHONE)
        send(page, "help")
        status = reply_bubbles(page).get_by_test_id("status")
        expect(status).to_have_attribute("data-status", "undelivered", timeout=10_000)
        error = status.get_by_test_id("error-code")
        expect(error).to_contain_text("30011 MMS not supported")
        assert "text only" in (error.get_attribute("title") or "")


def test_pictures_to_germany_arrive_as_links_by_the_mms_converter(
    tmp_path: Path, page: Any
) -> None:
    """Sent as MMS anyway to a phone that takes MMS, in a country Twilio has no
    MMS to: the MMS Converter delivers an SMS with links (no 30011)."""
    berlin = "+4915123456789"
    settings = sandbox_settings(tmp_path, mms_fallback="send")
    with serve_sandbox(tmp_path, settings) as box:
        open_phone(page, box, berlin)
        send(page, "help")
        reply = reply_bubbles(page)
        status = reply.get_by_test_id("status")
        expect(status).to_have_attribute("data-status", "delivered", timeout=10_000)
        links = reply.get_by_test_id("converted-media").locator("a")
        expect(links).to_have_count(2)
        expect(reply.locator("img")).to_have_count(0)


def test_a_phone_that_is_off_shows_undelivered_with_its_code(
    sandbox: Sandbox, page: Any
) -> None:
    open_phone(page, sandbox, OFF_PHONE)
    send(page, "hours")
    status = reply_bubbles(page).get_by_test_id("status")
    expect(status).to_have_attribute("data-status", "undelivered", timeout=10_000)
    expect(status.get_by_test_id("error-code")).to_contain_text(
        "30003 Unreachable destination handset"
    )


def test_messages_from_before_the_page_opened_are_shown(
    sandbox: Sandbox, page: Any
) -> None:
    sandbox.carrier.send_from_phone(US_PHONE, sandbox.number, "hours")
    open_phone(page, sandbox, US_PHONE)
    expect(reply_bubbles(page)).to_contain_text("Monday to Friday")


def test_a_reply_to_another_phone_marks_its_tab(sandbox: Sandbox, page: Any) -> None:
    open_phone(page, sandbox, US_PHONE)
    sandbox.carrier.send_from_phone(NATIONAL_PHONE, sandbox.number, "hours")
    badge = page.get_by_test_id(f"phone-{NATIONAL_PHONE}").locator(".badge")
    expect(badge).to_be_visible(timeout=10_000)
    page.get_by_test_id(f"phone-{NATIONAL_PHONE}").click()
    expect(reply_bubbles(page)).to_contain_text("Monday to Friday")
    expect(badge).to_have_count(0)


def test_account_panel_masks_the_token_until_asked(sandbox: Sandbox, page: Any) -> None:
    page.goto(sandbox.url + "/")
    token = page.locator("#auth-token")
    expect(token).not_to_contain_text(sandbox.state.auth_token)
    page.locator("#reveal-token").click()
    expect(token).to_have_text(sandbox.state.auth_token)
    expect(page.locator("#account-sid")).to_have_text(sandbox.state.account_sid)
    expect(page.locator("#api-url")).to_have_text(sandbox.url)
    expect(page.locator("#account-number")).to_have_text(sandbox.number)
    page.locator("#reveal-token").click()
    expect(token).not_to_contain_text(sandbox.state.auth_token)


def test_bad_input_is_explained_on_the_page(sandbox: Sandbox, page: Any) -> None:
    open_phone(page, sandbox, US_PHONE)
    page.locator("#send").click()
    expect(page.locator("#send-error")).to_contain_text("Type a message")
    page.locator("#picture").set_input_files(
        files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"not a png"}]
    )
    page.locator("#send").click()
    expect(page.locator("#send-error")).to_contain_text("is not a PNG")
    expect(page.get_by_test_id("sent-message")).to_have_count(0)


def test_emulator_only_page_shows_messages_without_a_bot(
    tmp_path: Path, page: Any
) -> None:
    with serve_sandbox(tmp_path, emulator_only=True) as box:
        open_phone(page, box, US_PHONE)
        expect(page.locator(".topbar")).to_contain_text("emulator only")
        send(page, "anyone there?")
        expect(page.get_by_test_id("sent-message")).to_contain_text("anyone there?")
        expect(reply_bubbles(page)).to_have_count(0)


@pytest.mark.parametrize(
    ("name", "viewport"),
    [
        ("laptop", {"width": 1280, "height": 800}),
        ("phone", {"width": 390, "height": 844}),
    ],
)
def test_screenshots_after_the_help_exchange(
    sandbox: Sandbox,
    browser: Any,
    page_errors: PageErrors,
    tmp_path: Path,
    name: str,
    viewport: dict[str, int],
) -> None:
    """Readable at both sizes: nothing wider than the window, the composer and
    the newest reply in view. ``TEXTWIRE_SCREENSHOT_DIR=docs`` keeps the
    pictures (docs/sandbox.png is the laptop one)."""
    sandbox.carrier.send_from_phone(US_PHONE, sandbox.number, "help")
    context = browser.new_context(viewport=viewport)
    try:
        tab = context.new_page()
        tab.on("pageerror", lambda exc: page_errors.append(str(exc)))
        tab.goto(sandbox.url + "/")
        status = reply_bubbles(tab).get_by_test_id("status")
        expect(status).to_have_attribute("data-status", "delivered", timeout=10_000)
        sid = reply_bubbles(tab).get_attribute("data-sid")
        tab.wait_for_function(IMAGES_LOADED, arg=sid)
        tab.locator("#body").fill("Thanks 😀")
        expect(tab.locator("#counter")).to_contain_text("UCS-2")
        width = tab.evaluate("() => document.documentElement.scrollWidth")
        assert width <= viewport["width"]
        expect(status).to_be_in_viewport()
        expect(tab.locator("#send")).to_be_in_viewport()
        expect(tab.get_by_test_id(f"phone-{US_PHONE}")).to_be_in_viewport()
        shot = tmp_path / f"sandbox-{name}.png"
        tab.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        keep = os.environ.get("TEXTWIRE_SCREENSHOT_DIR")
        if keep:
            target = Path(keep) / (
                "sandbox.png" if name == "laptop" else f"sandbox-{name}.png"
            )
            shutil.copyfile(shot, target)
    finally:
        context.close()
    assert not page_errors, page_errors

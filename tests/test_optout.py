"""STOP / START / HELP, the local refusal, and 21610 from Twilio."""

from __future__ import annotations

import pytest

from textwire import Bot, Context, Inbound
from textwire.config import Settings
from textwire.errors import RecipientOptedOut
from textwire.optout import HELP_WORDS, START_WORDS, STOP_WORDS, classify
from textwire.service import queue_message
from textwire.storage.sql import SqlStore
from textwire.web import create_app
from textwire.worker import SendWorker

from .conftest import PUBLIC_URL, PostFn, TwilioAPI, handle_inbox, make_form, sign

ALICE = "+14155550188"


def drain(worker: SendWorker) -> None:
    while worker.run_once():
        pass


@pytest.mark.parametrize("word", sorted(STOP_WORDS))
def test_every_stop_word_in_any_case_and_spacing(word: str) -> None:
    for text in (word, word.lower(), f"  {word.title()}\n"):
        assert classify(text) == "stop"
    assert classify(f"{word} please") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        *[(w, "start") for w in sorted(START_WORDS)],
        *[(w.lower(), "help") for w in sorted(HELP_WORDS)],
        ("stop it", None),
        ("", None),
        ("st op", None),
        ("please stop", None),
        ("unstoppable", None),
    ],
)
def test_start_help_and_non_keywords(text: str, expected: str | None) -> None:
    assert classify(text) == expected


def test_advanced_opt_out_type_wins() -> None:
    assert classify("ARRET", "STOP") == "stop"
    assert classify("STOP", "HELP") == "help"
    assert classify("hello", "unknown") is None


def is_opted_out(store: SqlStore, phone: str) -> bool:
    return phone in store.contacts.opted_out_among([phone])


def test_stop_opts_out_without_a_reply_and_start_opts_back_in(
    post_webhook: PostFn, worker: SendWorker, twilio_api: TwilioAPI, store: SqlStore
) -> None:
    # STOP: recorded, opted out when handled, no reply (Twilio answers STOP
    # itself)
    assert post_webhook(make_form(" stop ", From=ALICE)).status_code == 200
    assert not is_opted_out(store, ALICE)  # recorded only, not handled yet
    drain(worker)
    assert is_opted_out(store, ALICE)
    # Anything else while opted out: stored, no reply
    post_webhook(make_form("help", From=ALICE))
    drain(worker)
    assert twilio_api.creates == []
    assert len(store.messages.all("inbound")) == 2
    # START: opted back in, still no bot reply (Twilio confirms it)
    post_webhook(make_form("START", From=ALICE))
    drain(worker)
    assert not is_opted_out(store, ALICE)
    assert twilio_api.creates == []
    # and now the bot answers again
    post_webhook(make_form("help", From=ALICE))
    drain(worker)
    assert [c["form"]["To"] for c in twilio_api.creates] == [[ALICE]]


def test_yes_from_a_subscribed_contact_reaches_the_bot(
    post_webhook: PostFn, worker: SendWorker, twilio_api: TwilioAPI
) -> None:
    post_webhook(make_form("yes", From=ALICE))
    drain(worker)
    (create,) = twilio_api.creates
    assert "menu" in create["form"]["Body"][0].lower()


def test_sending_to_an_opted_out_contact_is_refused_locally(
    post_webhook: PostFn,
    worker: SendWorker,
    twilio_api: TwilioAPI,
    store: SqlStore,
    settings: Settings,
) -> None:
    # Given a reply already queued when the contact texts STOP
    (outbox_id,) = queue_message(
        store, to=ALICE, body="your order shipped", settings=settings
    )
    post_webhook(make_form("STOP", From=ALICE))
    # When the worker runs, nothing reaches Twilio
    drain(worker)
    assert twilio_api.creates == []
    row = store.outbox.row(outbox_id)
    assert row is not None
    assert (row["status"], row["last_error_code"]) == ("failed", 21610)
    assert "STOP" in row["last_error"]
    # And a new send is refused before it is queued
    with pytest.raises(RecipientOptedOut, match="START"):
        queue_message(store, to="(415) 555-0188", body="hello again", settings=settings)


def test_21610_from_twilio_marks_the_contact_opted_out(
    post_webhook: PostFn, worker: SendWorker, store: SqlStore
) -> None:
    post_webhook(make_form("help", From=ALICE))
    drain(worker)
    (row,) = store.messages.all("outbound")
    form = {
        "MessageSid": row["sid"],
        "MessageStatus": "failed",
        "ErrorCode": "21610",
        "AccountSid": "AC1",
    }
    assert post_webhook(form, "/twilio/status").status_code == 204
    assert is_opted_out(store, ALICE)
    (row,) = store.messages.all("outbound")
    assert row["error_code"] == 21610 and "STOP" in (row["error_message"] or "").upper()


def test_a_bot_can_leave_opt_out_to_its_messaging_service(
    settings: Settings, store: SqlStore, worker: SendWorker, twilio_api: TwilioAPI
) -> None:
    bot = Bot(handle_opt_out=False)

    @bot.message()
    def echo(msg: Inbound, ctx: Context) -> str:
        return f"got {msg.text}"

    app = create_app(settings, bot=bot, store=store)
    form = make_form("STOP", From=ALICE)
    app.test_client().post(
        "/twilio/sms",
        data=form,
        headers={"X-Twilio-Signature": sign(PUBLIC_URL + "/twilio/sms", form)},
    )
    handle_inbox(store, bot, settings)
    drain(worker)
    assert not is_opted_out(store, ALICE)
    assert twilio_api.creates[0]["form"]["Body"] == ["got STOP"]

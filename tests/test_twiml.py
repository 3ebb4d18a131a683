"""The ``twiml`` reply mode: replies answered in the webhook's TwiML, never by REST.

Each reply is one ``<Message>`` (``<Body>`` + one ``<Media>`` per picture) whose
``action``/``statusCallback`` lead back to ``/twilio/status?outbox=N``. The
replies are recorded like any other, in outbox rows no worker ever claims.
Each test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from flask import Flask

from textwire import Bot, Context, Inbound, Reply
from textwire.config import Settings
from textwire.errors import ConfigError
from textwire.service import queue_message
from textwire.storage.sql import SqlStore
from textwire.web import create_app
from textwire.web.twiml import EMPTY_TWIML, TWIML_MAX_BYTES, render_replies
from textwire.worker import SendWorker

from .conftest import BOT_NUMBER, PUBLIC_URL, PostFn, TwilioAPI, make_form, sign

STATUS = f"{PUBLIC_URL}/twilio/status?outbox="


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared test settings, in the twiml reply mode."""
    return settings.replace(reply_mode="twiml")


def messages_of(response: Any) -> list[ET.Element]:
    """The ``<Message>`` elements of a TwiML answer (checked to be one)."""
    assert response.status_code == 200
    assert response.content_type == "text/xml; charset=utf-8"
    root = ET.fromstring(response.get_data())
    assert root.tag == "Response"
    assert all(child.tag == "Message" for child in root)
    return list(root)


def parts(message: ET.Element) -> tuple[list[str], list[str]]:
    """A ``<Message>``'s bodies and media URLs; nothing else inside, no loose text."""
    assert (message.text or "").strip() == ""
    assert {child.tag for child in message} <= {"Body", "Media"}
    bodies = [child.text or "" for child in message if child.tag == "Body"]
    media = [child.text or "" for child in message if child.tag == "Media"]
    return bodies, media


def drain(worker: SendWorker) -> int:
    total = 0
    for _ in range(5):
        total += worker.run_once()
    return total


def post(app: Flask, form: dict[str, str]) -> Any:
    path = "/twilio/sms"
    signature = sign(PUBLIC_URL + path, form)
    return app.test_client().post(
        path, data=form, headers={"X-Twilio-Signature": signature}
    )


def test_help_is_one_twiml_message_with_body_and_both_media_and_no_rest_call(
    post_webhook: PostFn,
    worker: SendWorker,
    twilio_api: TwilioAPI,
    store: SqlStore,
) -> None:
    # Given a US contact who texts help to a bot in the twiml mode
    response = post_webhook(make_form(" help ", From="+14155550199"))
    # Then the answer is the reply: one message, text and both pictures
    (message,) = messages_of(response)
    bodies, media = parts(message)
    assert len(bodies) == 1 and "help desk" in bodies[0]
    assert media == [
        f"{PUBLIC_URL}/media/logo.png",
        f"{PUBLIC_URL}/media/helpdesk.png",
    ]
    # with its status coming back to the outbox row that records it
    (row,) = store.messages.all("outbound")
    outbox = store.outbox.row(1)
    assert outbox is not None and outbox["status"] == "twiml"
    assert message.get("action") == f"{STATUS}{outbox['id']}"
    assert message.get("statusCallback") == message.get("action")
    assert message.get("method") == "POST"
    assert message.get("to") is None  # Twilio answers the sender as it knows it
    assert (row["to_number"], row["from_number"]) == ("+14155550199", BOT_NUMBER)
    assert row["body"] == bodies[0] and row["media"] == media
    assert row["status"] == "pending" and row["in_reply_to"] is not None
    # When the send worker runs, again and again
    assert drain(worker) == 0
    # Then nothing ever went through Twilio's REST API
    assert twilio_api.requests == []
    assert store.outbox.depth() == 0


def test_three_replies_are_three_messages_in_order(
    settings: Settings, store: SqlStore, worker: SendWorker, twilio_api: TwilioAPI
) -> None:
    bot = Bot(name="steps")

    @bot.message()
    def steps(msg: Inbound, ctx: Context) -> list[str | Reply]:
        return ["one", Reply("two", media=["https://cdn.example.com/2.png"]), "three"]

    woken: list[str] = []
    app = create_app(
        settings, bot=bot, store=store, notify=lambda: woken.append("wake")
    )
    response = post(app, make_form("go"))
    messages = messages_of(response)
    assert [parts(m) for m in messages] == [
        (["one"], []),
        (["two"], ["https://cdn.example.com/2.png"]),
        (["three"], []),
    ]
    ids = [row["id"] for row in store.messages.all("outbound")]
    assert len(ids) == 3
    actions = [m.get("action") for m in messages]
    assert actions == [f"{STATUS}{i}" for i in (1, 2, 3)]
    assert woken == []  # nothing for a worker to do
    assert drain(worker) == 0
    assert twilio_api.requests == []


def test_no_reply_is_an_empty_response(settings: Settings, store: SqlStore) -> None:
    bot = Bot(name="quiet")

    @bot.message()
    def ignore(msg: Inbound, ctx: Context) -> None:
        return None

    response = post(create_app(settings, bot=bot, store=store), make_form("hi"))
    assert response.get_data(as_text=True) == EMPTY_TWIML
    assert messages_of(response) == []
    assert store.messages.all("outbound") == []


def test_stop_is_an_empty_response_and_opts_the_contact_out(
    post_webhook: PostFn, store: SqlStore
) -> None:
    response = post_webhook(make_form("STOP", From="+14155550123"))
    assert response.get_data(as_text=True) == EMPTY_TWIML
    assert store.contacts.opted_out_among(["+14155550123"]) == {"+14155550123"}
    # and an opted-out contact gets no TwiML reply either, until START
    again = post_webhook(make_form("help", From="+14155550123"))
    assert again.get_data(as_text=True) == EMPTY_TWIML
    assert store.messages.all("outbound") == []


def test_uk_sender_gets_the_links_in_the_body_and_no_media(
    post_webhook: PostFn, store: SqlStore
) -> None:
    # Given the default link policy and a contact whose phone cannot get MMS
    response = post_webhook(make_form("help", From="+447911123456", FromCountry="GB"))
    (message,) = messages_of(response)
    bodies, media = parts(message)
    assert media == []
    (body,) = bodies
    assert "help desk" in body
    assert f"{PUBLIC_URL}/media/logo.png" in body
    assert f"{PUBLIC_URL}/media/helpdesk.png" in body
    (row,) = store.messages.all("outbound")
    assert row["to_number"] == "+447911123456" and row["media"] == []


def test_the_action_callback_stores_the_sid_and_the_status(
    post_webhook: PostFn, store: SqlStore
) -> None:
    (message,) = messages_of(post_webhook(make_form("help")))
    action = message.get("action") or ""
    assert action.startswith(STATUS)
    path = action.removeprefix(PUBLIC_URL)
    sid = "SM" + "5e" * 16

    def callback(status: str) -> int:
        # What Twilio posts to a <Message action>: the new message's SID and status.
        form = {
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "AccountSid": "AC" + "a1" * 16,
            "From": BOT_NUMBER,
            "To": "+14155550199",
            "ApiVersion": "2010-04-01",
        }
        code: int = post_webhook(form, path).status_code
        return code

    assert callback("sent") == 204
    (row,) = store.messages.all("outbound")
    assert (row["sid"], row["status"]) == (sid, "sent")
    assert callback("delivered") == 204
    assert callback("sent") == 204  # late: changes nothing
    (row,) = store.messages.all("outbound")
    assert (row["sid"], row["status"]) == (sid, "delivered")
    outbox = store.outbox.row(int(action.rsplit("=", 1)[1]))
    assert outbox is not None
    assert (outbox["sid"], outbox["status"]) == (sid, "twiml")
    assert outbox["message_status"] == "delivered"


def test_a_duplicate_webhook_gets_an_empty_response(
    post_webhook: PostFn, store: SqlStore
) -> None:
    form = make_form("help")
    first = post_webhook(form)
    second = post_webhook(form)
    assert len(messages_of(first)) == 1
    # The first delivery got the replies; answering them again could text twice.
    assert second.get_data(as_text=True) == EMPTY_TWIML
    assert len(store.messages.all("inbound")) == 1
    assert len(store.messages.all("outbound")) == 1


def test_a_handler_that_raises_answers_the_apology_in_twiml(
    settings: Settings, store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    bot = Bot(name="fragile")

    @bot.message()
    def explode(msg: Inbound, ctx: Context) -> str:
        raise ZeroDivisionError("division by zero in the pricing code")

    app = create_app(
        settings.replace(apology="Sorry! Try again."), bot=bot, store=store
    )
    with caplog.at_level(logging.ERROR):
        response = post(app, make_form("price?"))
    (message,) = messages_of(response)
    assert parts(message) == (["Sorry! Try again."], [])
    assert "ZeroDivisionError" not in response.get_data(as_text=True)
    assert any(r.exc_info for r in caplog.records)


def test_a_forged_webhook_is_refused_in_twiml_mode_too(
    post_webhook: PostFn, store: SqlStore
) -> None:
    form = make_form("help")
    forged = post_webhook(form, signature=sign(PUBLIC_URL + "/twilio/sms", form, "x"))
    assert forged.status_code == 403
    assert store.messages.all() == []


def test_twiml_rows_never_hold_back_a_later_rest_send(
    post_webhook: PostFn,
    settings: Settings,
    store: SqlStore,
    worker: SendWorker,
    twilio_api: TwilioAPI,
) -> None:
    # Given a TwiML reply to a contact, then a `textwire send` to the same phone
    post_webhook(make_form("help", From="+14155550199"))
    queue_message(
        store, to="+14155550199", body="Your order shipped", settings=settings
    )
    # Then the send goes out through the worker: the TwiML row is final
    assert drain(worker) == 1
    (create,) = twilio_api.creates
    assert create["form"]["Body"] == ["Your order shipped"]
    rows = [store.outbox.row(i) or {} for i in (1, 2)]
    assert [row["status"] for row in rows] == ["twiml", "sent"]


def test_render_replies_escapes_and_warns_over_twilios_64_kb(
    caplog: pytest.LogCaptureFixture,
) -> None:
    document = render_replies(
        [Reply("Fish & <chips>\x07 ok 👍")], [7], status_url="https://b.example/s"
    )
    (message,) = ET.fromstring(document)
    assert parts(message) == (["Fish & <chips> ok 👍"], [])
    assert message.get("action") == "https://b.example/s?outbox=7"
    assert render_replies([], [], status_url="https://b.example/s") == EMPTY_TWIML
    # 50 replies of 1,600 characters cannot be one TwiML answer
    many = [Reply("x" * 1600)] * 50
    with caplog.at_level(logging.ERROR, logger="textwire.web"):
        big = render_replies(many, range(50), status_url="https://b.example/s")
    assert len(big.encode()) > TWIML_MAX_BYTES
    assert "11750" in caplog.text


def test_settings_know_the_reply_mode() -> None:
    assert Settings().reply_mode == "rest"
    env = {"TEXTWIRE_REPLY_MODE": "TwiML"}
    assert Settings.from_env(environ=env, env_file=None).reply_mode == "twiml"
    with pytest.raises(ConfigError, match="TEXTWIRE_REPLY_MODE must be rest or twiml"):
        Settings(reply_mode="sms")
    with pytest.raises(ConfigError, match="'webhook'"):
        Settings.from_env(environ={"TEXTWIRE_REPLY_MODE": "webhook"}, env_file=None)


def test_the_bot_runs_outside_the_write_transaction_with_the_same_middleware(
    settings: Settings, store: SqlStore
) -> None:
    from sqlalchemy import text

    bot = Bot(name="inline")

    @bot.message("stop")
    def never(msg: Inbound, ctx: Context) -> str:
        raise AssertionError("STOP reaches no handler")

    @bot.message()
    async def note(msg: Inbound, ctx: Context) -> Reply:
        # Its own write to the database does not wait on textwire's (SQLite
        # has one writer: inside the webhook's transaction this would hang).
        with store.engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS notes (sid TEXT)"))
            conn.execute(text("INSERT INTO notes VALUES (:sid)"), {"sid": msg.sid})
        ctx.state.update(noted=True)
        return Reply("noted", media=["https://cdn.example.com/n.png"])

    app = create_app(settings, bot=bot, store=store)
    # The MMS policy applies (links for a phone without MMS), async is awaited
    uk = make_form("note this", From="+447911123456", FromCountry="GB")
    (message,) = messages_of(post(app, uk))
    (body,), media = parts(message)
    assert media == [] and "https://cdn.example.com/n.png" in body
    # STOP opts out without a handler, in the same commit as the inbox row
    assert messages_of(post(app, make_form("STOP", From="+447911123456"))) == []
    assert store.contacts.opted_out_among(["+447911123456"]) == {"+447911123456"}
    assert [r["status"] for r in store.inbox.rows()] == ["done", "done"]
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM notes")).scalar_one() == 1

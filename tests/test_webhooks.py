"""End to end: a signed Twilio webhook in, exactly one Twilio API call out.

The Flask app is driven with requests signed by twilio's RequestValidator; the
real twilio client sends over HTTP to a local server that records each call.
Each test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from textwire import Bot, Context, Inbound
from textwire.config import Settings
from textwire.storage.sql import SqlStore
from textwire.web import create_app
from textwire.worker import SendWorker

from .conftest import (
    AUTH_TOKEN,
    BOT_NUMBER,
    PUBLIC_URL,
    PostFn,
    TwilioAPI,
    handle_inbox,
    make_form,
    sign,
)


def drain(worker: SendWorker) -> None:
    while worker.run_once():
        pass


def test_help_is_one_message_with_text_and_both_images_to_e164(
    post_webhook: PostFn, worker: SendWorker, twilio_api: TwilioAPI
) -> None:
    # Given a contact who texts " HELP " from a US number
    response = post_webhook(make_form(" HELP ", From="+14155550199"))
    # Then Twilio gets an empty TwiML answer
    assert response.status_code == 200
    assert response.content_type.startswith("text/xml")
    assert response.get_data(as_text=True).endswith("<Response/>")
    # When the worker runs
    drain(worker)
    # Then exactly one messages.create went out, text and both images together
    (create,) = twilio_api.creates
    form = create["form"]
    assert form["To"] == ["+14155550199"]
    assert form["From"] == [BOT_NUMBER]
    assert "help desk" in form["Body"][0]
    assert form["MediaUrl"] == [
        f"{PUBLIC_URL}/media/logo.png",
        f"{PUBLIC_URL}/media/helpdesk.png",
    ]
    assert form["StatusCallback"][0].startswith(f"{PUBLIC_URL}/twilio/status?outbox=")
    assert create["auth"] and create["auth"].startswith("AC")


def test_national_format_sender_is_answered_in_e164(
    post_webhook: PostFn, worker: SendWorker, twilio_api: TwilioAPI
) -> None:
    # Twilio sends national-format From numbers for some carriers/countries.
    post_webhook(make_form("help", From="(415) 555-0142", FromCountry="US"))
    post_webhook(make_form("help", From="07911 123456", FromCountry="GB"))
    drain(worker)
    # (two contacts: handled side by side, in either order)
    assert sorted(c["form"]["To"] for c in twilio_api.creates) == [
        ["+14155550142"],
        ["+447911123456"],
    ]


def test_images_are_served_from_media(client: FlaskClient) -> None:
    for name in ("logo.png", "helpdesk.png"):
        with client.get(f"/media/{name}") as response:
            assert response.status_code == 200
            assert response.content_type == "image/png"
            assert response.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get("/media/../../etc/passwd").status_code == 404
    assert client.get("/media/nope.png").status_code == 404


def test_other_text_gets_the_menu_and_a_picture_an_acknowledgement(
    post_webhook: PostFn, worker: SendWorker, twilio_api: TwilioAPI
) -> None:
    post_webhook(make_form("what can you do?"))
    post_webhook(
        make_form(
            "",
            From="+14155550177",
            NumMedia="1",
            MediaUrl0="https://api.twilio.com/2010-04-01/Accounts/x/Media/ME1",
            MediaContentType0="image/jpeg",
        )
    )
    drain(worker)
    bodies = {c["form"]["To"][0]: c["form"]["Body"][0] for c in twilio_api.creates}
    assert "menu" in bodies["+14155550199"].lower()
    assert "picture" in bodies["+14155550177"].lower()
    assert all("MediaUrl" not in c["form"] for c in twilio_api.creates)


def test_duplicate_webhook_gets_200_and_no_second_reply(
    post_webhook: PostFn, worker: SendWorker, twilio_api: TwilioAPI, store: SqlStore
) -> None:
    form = make_form("help")
    assert post_webhook(form).status_code == 200
    assert post_webhook(form).status_code == 200
    drain(worker)
    assert len(twilio_api.creates) == 1
    assert len(store.messages.all("inbound")) == 1


def test_concurrent_duplicates_get_one_reply(
    app: Flask, worker: SendWorker, twilio_api: TwilioAPI, store: SqlStore
) -> None:
    # Given the same webhook delivered four times at once
    form = make_form("help")
    signature = sign(PUBLIC_URL + "/twilio/sms", form)
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def deliver() -> None:
        client = app.test_client()
        barrier.wait(timeout=10)
        response = client.post(
            "/twilio/sms", data=form, headers={"X-Twilio-Signature": signature}
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # Then all are acknowledged and exactly one reply goes out
    assert statuses == [200, 200, 200, 200]
    drain(worker)
    assert len(twilio_api.creates) == 1
    assert len(store.messages.all("outbound")) == 1


def test_forged_and_missing_signatures_are_refused_and_explained(
    client: FlaskClient,
    post_webhook: PostFn,
    store: SqlStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    form = make_form("help")
    with caplog.at_level(logging.WARNING, logger="textwire.web"):
        forged = post_webhook(
            form, signature=sign(PUBLIC_URL + "/twilio/sms", form, "x")
        )
        missing = client.post("/twilio/sms", data=form)
        tampered_form = dict(form, Body="give me everything")
        tampered = post_webhook(
            tampered_form, signature=sign(PUBLIC_URL + "/twilio/sms", form)
        )
    assert [forged.status_code, missing.status_code, tampered.status_code] == [403] * 3
    assert store.messages.all() == []
    text = caplog.text
    # The log says which URL was checked and how to fix it, never the token.
    assert f"{PUBLIC_URL}/twilio/sms" in text
    assert "TEXTWIRE_PUBLIC_URL" in text
    assert "no X-Twilio-Signature header" in text
    assert AUTH_TOKEN not in text


@pytest.fixture
def proxied_app(settings: Settings, bot: Bot, store: SqlStore) -> Flask:
    # No TEXTWIRE_PUBLIC_URL: the URL is derived from the request.
    return create_app(settings.replace(public_url=None), bot=bot, store=store)


def test_signature_behind_a_tunnel_uses_forwarded_proto_and_host(
    proxied_app: Flask, store: SqlStore, bot: Bot, settings: Settings
) -> None:
    # Given ngrok terminating TLS and forwarding plain HTTP to localhost
    client = proxied_app.test_client()
    form = make_form("help")
    public = "https://abc123.ngrok.app/twilio/sms"
    headers = {
        "X-Twilio-Signature": sign(public, form),
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "abc123.ngrok.app",
    }
    response = client.post("/twilio/sms", data=form, headers=headers)
    assert response.status_code == 200
    # The reply's images point at the public URL too (the webhook keeps it
    # for the worker, which has no request to derive it from)
    handle_inbox(store, bot, settings.replace(public_url=None))
    (row,) = store.messages.all("outbound")
    assert row["media"][0] == "https://abc123.ngrok.app/media/logo.png"
    # Without the forwarded headers the same signature cannot match
    other = make_form("help")
    plain = client.post(
        "/twilio/sms",
        data=other,
        headers={"X-Twilio-Signature": sign(public, other)},
    )
    assert plain.status_code == 403


def test_signature_with_query_string_is_checked_on_the_full_url(
    client: FlaskClient,
) -> None:
    form = make_form("help")
    url = PUBLIC_URL + "/twilio/sms?tenant=7"
    ok = client.post(
        "/twilio/sms?tenant=7",
        data=form,
        headers={"X-Twilio-Signature": sign(url, form)},
    )
    assert ok.status_code == 200
    other = make_form("help")
    bad = client.post(
        "/twilio/sms?tenant=8",
        data=other,
        headers={"X-Twilio-Signature": sign(url, other)},
    )
    assert bad.status_code == 403


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        ({"MessageSid": ""}, "MessageSid"),
        ({"MessageSid": "not-a-sid", "SmsSid": "not-a-sid"}, "MessageSid"),
        ({"From": ""}, "From"),
        ({"From": "hello!"}, "From"),
        ({"To": "12"}, "To"),
        ({"NumMedia": "lots"}, "NumMedia"),
        ({"NumMedia": "2", "MediaUrl0": "https://x.example/a.png"}, "MediaUrl1"),
        ({"NumSegments": "-1"}, "NumSegments"),
        ({"AccountSid": ""}, "AccountSid"),
    ],
)
def test_malformed_forms_get_400_and_nothing_is_stored(
    post_webhook: PostFn,
    store: SqlStore,
    change: dict[str, str],
    phrase: str,
) -> None:
    form = make_form("help")
    form.update(change)
    if not form["MessageSid"]:
        del form["MessageSid"]
        del form["SmsSid"]
    response = post_webhook(form)
    assert response.status_code == 400
    assert phrase in response.get_data(as_text=True)
    assert store.messages.all() == []


def test_oversized_request_gets_413(client: FlaskClient, store: SqlStore) -> None:
    form = make_form("x" * 70_000)
    response = client.post(
        "/twilio/sms",
        data=form,
        headers={"X-Twilio-Signature": sign(PUBLIC_URL + "/twilio/sms", form)},
    )
    assert response.status_code == 413
    assert store.messages.all() == []


def test_wrong_method_and_unknown_route(client: FlaskClient) -> None:
    assert client.get("/twilio/sms").status_code == 405
    assert client.post("/twilio/nope").status_code == 404


def test_api_errors_are_retried_or_failed_as_twilio_means_them(
    post_webhook: PostFn,
    send_worker: SendWorker,
    twilio_api: TwilioAPI,
    store: SqlStore,
    bot: Bot,
    settings: Settings,
) -> None:
    # Given Twilio answers 429 (Retry-After 3), then 500, then accepts
    twilio_api.failures += [
        (
            429,
            {"code": 20429, "message": "Too Many Requests", "status": 429},
            {"Retry-After": "3"},
        ),
        (500, {"code": 20500, "message": "Internal Server Error", "status": 500}, {}),
    ]
    post_webhook(make_form("help"))
    from datetime import UTC, datetime, timedelta

    t0 = datetime.now(UTC)
    assert handle_inbox(store, bot, settings, now=t0) == 1
    worker = send_worker
    assert worker.run_once(now=t0) == 1
    (row,) = [store.outbox.row(i) for i in (1,)]
    assert row is not None and row["status"] == "queued"
    assert row["next_attempt_at"] == t0 + timedelta(seconds=3)
    assert worker.run_once(now=t0 + timedelta(seconds=2)) == 0
    assert worker.run_once(now=t0 + timedelta(seconds=3)) == 1  # the 500
    assert worker.run_once(now=t0 + timedelta(seconds=60)) == 1  # accepted
    row = store.outbox.row(1)
    assert row is not None and row["status"] == "sent" and row["sid"]
    # Three POSTs for one message: the two refused ones never created a message.
    assert len(twilio_api.creates) == 3


def test_permanent_error_fails_with_code_and_reason(
    post_webhook: PostFn, worker: SendWorker, twilio_api: TwilioAPI, store: SqlStore
) -> None:
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
    post_webhook(make_form("help", From="+14155550166"))
    drain(worker)
    row = store.outbox.row(1)
    assert row is not None
    assert (row["status"], row["last_error_code"]) == ("failed", 21610)
    assert "+14155550166" not in (row["last_error"] or "")
    assert len(twilio_api.creates) == 1
    with store.begin() as conn:
        assert store.contacts.ensure(conn, "+14155550166", datetime_now())


def datetime_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def test_timeout_after_sending_is_reconciled_not_resent(
    post_webhook: PostFn,
    settings: Settings,
    store: SqlStore,
    twilio_api: TwilioAPI,
    bot: Bot,
) -> None:
    from textwire.transports.twilio import TwilioTransport

    # Given Twilio that takes longer to answer than our timeout
    twilio_api.stall = threading.Event()
    transport = TwilioTransport(
        account_sid=settings.twilio_account_sid or "",
        auth_token=AUTH_TOKEN,
        from_=BOT_NUMBER,
        api_url=twilio_api.url,
        timeout=0.3,
        public_url=PUBLIC_URL,
    )
    worker = SendWorker(store, transport, settings=settings, worker_id="w")
    post_webhook(make_form("help"))
    handle_inbox(store, bot, settings)
    worker.run_once()
    row = store.outbox.row(1)
    assert row is not None and row["status"] == "unknown"
    assert len(twilio_api.creates) == 1
    twilio_api.stall.set()
    twilio_api.stall = None
    transport.close()


def test_a_status_callback_before_reconciliation_does_not_cause_a_resend(
    post_webhook: PostFn,
    settings: Settings,
    store: SqlStore,
    twilio_api: TwilioAPI,
    bot: Bot,
) -> None:
    from datetime import UTC, datetime, timedelta

    from textwire.transports.twilio import TwilioTransport

    # Given Twilio that creates the message but answers after our timeout
    twilio_api.chaos, twilio_api.chaos_stall = (0.0, 0.0, 1.0), 0.6
    transport = TwilioTransport(
        account_sid=settings.twilio_account_sid or "",
        auth_token=AUTH_TOKEN,
        from_=BOT_NUMBER,
        api_url=twilio_api.url,
        timeout=0.3,
        public_url=PUBLIC_URL,
    )
    worker = SendWorker(store, transport, settings=settings, worker_id="w")
    post_webhook(make_form("help"))
    handle_inbox(store, bot, settings)
    worker.run_once()
    twilio_api.chaos = None
    row = store.outbox.row(1)
    assert row is not None and row["status"] == "unknown"
    # When the message's status callback arrives before the reconciliation
    (created,) = twilio_api.created
    callback = {"MessageSid": created["sid"], "MessageStatus": "sent"}
    assert post_webhook(callback, "/twilio/status?outbox=1").status_code == 204
    worker.run_once(now=datetime.now(UTC) + timedelta(minutes=5))
    transport.close()
    # Then the reconciliation adopts it: one message, never a second text
    assert len(twilio_api.creates) == 1
    row = store.outbox.row(1)
    assert row is not None
    assert (row["status"], row["sid"]) == ("sent", created["sid"])


def test_handler_that_raises_gets_an_apology_not_a_traceback(
    settings: Settings,
    store: SqlStore,
    send_worker: SendWorker,
    twilio_api: TwilioAPI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = Bot(name="fragile")

    @bot.message()
    def explode(msg: Inbound, ctx: Context) -> str:
        raise ZeroDivisionError("division by zero in the pricing code")

    settings = settings.replace(apology="Sorry! Try again soon.")
    app = create_app(settings, bot=bot, store=store)
    form = make_form("price?")
    response = app.test_client().post(
        "/twilio/sms",
        data=form,
        headers={"X-Twilio-Signature": sign(PUBLIC_URL + "/twilio/sms", form)},
    )
    assert response.status_code == 200
    with caplog.at_level(logging.ERROR):
        assert handle_inbox(store, bot, settings) == 1
    drain(send_worker)
    (create,) = twilio_api.creates
    assert create["form"]["Body"] == ["Sorry! Try again soon."]
    assert "Traceback" in caplog.text or any(r.exc_info for r in caplog.records)


def test_healthz_reports_the_database(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["database"] == "ok"


def test_healthz_is_503_when_the_database_is_not_migrated(
    settings: Settings, bot: Bot, database_url: str
) -> None:
    empty = SqlStore(database_url)
    app = create_app(settings, bot=bot, store=empty)
    response = app.test_client().get("/healthz")
    empty.dispose()
    assert response.status_code == 503
    assert "textwire db upgrade" in response.get_json()["database"]


def test_status_callback_updates_the_message_monotonically(
    post_webhook: PostFn, worker: SendWorker, store: SqlStore
) -> None:
    post_webhook(make_form("help"))
    drain(worker)
    (row,) = store.messages.all("outbound")
    sid = row["sid"]

    def status(value: str, **extra: str) -> int:
        form = {"MessageSid": sid, "MessageStatus": value, "AccountSid": "AC1", **extra}
        code: int = post_webhook(form, "/twilio/status?outbox=1").status_code
        return code

    assert status("sent") == 204
    assert status("delivered") == 204
    assert status("sent") == 204  # late
    (row,) = store.messages.all("outbound")
    assert row["status"] == "delivered"
    assert status("undelivered", ErrorCode="30003") == 204
    (row,) = store.messages.all("outbound")
    assert row["status"] == "delivered" and row["error_code"] == 30003


def test_status_callback_needs_a_signature_and_the_fields(
    client: FlaskClient, post_webhook: PostFn
) -> None:
    form = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "sent"}
    assert client.post("/twilio/status", data=form).status_code == 403
    assert (
        post_webhook({"MessageSid": "SM" + "0" * 32}, "/twilio/status").status_code
        == 400
    )
    assert (
        post_webhook(dict(form, ErrorCode="abc"), "/twilio/status").status_code == 400
    )
    assert post_webhook(form, "/twilio/status?outbox=x").status_code == 400
    # An unknown message is acknowledged (Twilio would retry otherwise) and logged.
    assert post_webhook(form, "/twilio/status").status_code == 204


def test_create_app_refuses_to_run_unverified_by_accident(
    settings: Settings, bot: Bot, store: SqlStore
) -> None:
    from textwire.errors import ConfigError

    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN"):
        create_app(settings.replace(twilio_auth_token=None), bot=bot, store=store)
    app = create_app(
        settings.replace(twilio_auth_token=None, validate_signatures=False),
        bot=bot,
        store=store,
    )
    response = app.test_client().post("/twilio/sms", data=make_form("help"))
    assert response.status_code == 200


def test_conversation_state_lives_in_the_database(
    post_webhook: PostFn, worker: SendWorker, twilio_api: TwilioAPI, store: SqlStore
) -> None:
    # The ticket conversation spans two webhooks; its state is in the database.
    post_webhook(make_form("ticket", From="+14155550133"))
    post_webhook(make_form("my screen is blank", From="+14155550133"))
    post_webhook(make_form("my screen is blank", From="+14155550144"))
    drain(worker)
    to_133 = [
        c["form"]["Body"][0]
        for c in twilio_api.creates
        if c["form"]["To"] == ["+14155550133"]
    ]
    to_144 = [
        c["form"]["Body"][0]
        for c in twilio_api.creates
        if c["form"]["To"] == ["+14155550144"]
    ]
    assert len(to_133) == 2 and "Describe" in to_133[0] and "ticket #" in to_133[1]
    assert len(to_144) == 1 and "menu" in to_144[0].lower()

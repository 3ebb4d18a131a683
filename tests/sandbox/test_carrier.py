"""The simulated carrier: statuses, signed callbacks, inbound webhooks, STOP."""

from __future__ import annotations

import logging
import queue
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from pytest_httpserver import HTTPServer
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from werkzeug import Request, Response

from textwire.messages import Inbound
from textwire.sandbox.state import VirtualPhone

from .conftest import (
    ACCOUNT_SID,
    ANA,
    AUTH_TOKEN,
    BEN,
    CHLOE,
    FAY,
    GIL,
    NUMBER,
    SERVICE_SID,
    Emulator,
    EmulatorFactory,
)

LATER = timedelta(hours=1)
PNG = "https://example.com/media/logo.png"
INBOUND_KEYS = {
    "AccountSid",
    "ApiVersion",
    "Body",
    "From",
    "FromCity",
    "FromCountry",
    "FromState",
    "FromZip",
    "MessageSid",
    "NumMedia",
    "NumSegments",
    "SmsMessageSid",
    "SmsSid",
    "SmsStatus",
    "To",
    "ToCity",
    "ToCountry",
    "ToState",
    "ToZip",
}
validator = RequestValidator(AUTH_TOKEN)


def later() -> datetime:
    return datetime.now(UTC) + LATER


def send(client: Client, callback: str | None, **kwargs: Any) -> Any:
    params: dict[str, Any] = {"to": ANA.number, "from_": NUMBER, "body": "hello"}
    params.update(kwargs)
    if callback:
        params["status_callback"] = callback
    return client.messages.create(**{k: v for k, v in params.items() if v is not None})


def requests_to(server: HTTPServer, path: str) -> list[Request]:
    return [request for request, _ in server.log if request.path == path]


def assert_signed(request: Request, url: str, params: Any = None) -> None:
    form = request.form if params is None else params
    signature = request.headers.get("X-Twilio-Signature", "")
    assert validator.validate(url, form, signature), "signature does not validate"


@pytest.fixture
def callbacks(httpserver: HTTPServer) -> str:
    httpserver.expect_request("/status", method="POST").respond_with_data("", 204)
    return httpserver.url_for("/status")


def carrier_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "textwire.sandbox.carrier"
    ]


def statuses(server: HTTPServer) -> list[tuple[str, str | None]]:
    return [
        (r.form["MessageStatus"], r.form.get("ErrorCode"))
        for r in requests_to(server, "/status")
    ]


# -- outbound statuses and callbacks ---------------------------------------------


def test_status_callbacks_arrive_signed_and_in_order(
    emulator: Emulator, twilio_client: Client, httpserver: HTTPServer, callbacks: str
) -> None:
    sid = send(twilio_client, callbacks).sid
    assert emulator.carrier.run_due(later()) == 3

    assert statuses(httpserver) == [
        ("sending", None),
        ("sent", None),
        ("delivered", None),
    ]
    for request in requests_to(httpserver, "/status"):
        assert_signed(request, callbacks)
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        form = request.form
        assert form["MessageSid"] == form["SmsSid"] == sid
        assert form["SmsStatus"] == form["MessageStatus"]
        assert (form["AccountSid"], form["From"], form["To"]) == (
            ACCOUNT_SID,
            NUMBER,
            ANA.number,
        )
        assert form["ApiVersion"] == "2010-04-01"
    fetched = twilio_client.messages(sid).fetch()
    assert fetched.status == "delivered"
    assert fetched.date_sent is not None
    assert fetched.error_code is None


def test_one_step_per_step_delay_and_no_callback_for_the_initial_status(
    make_emulator: EmulatorFactory, httpserver: HTTPServer, callbacks: str
) -> None:
    emulator = make_emulator(step_delay=10)
    client = emulator.client()
    sid = send(client, callbacks).sid
    start = datetime.now(UTC)
    assert emulator.carrier.run_due(start) == 0
    assert requests_to(httpserver, "/status") == []
    assert emulator.carrier.run_due(start + timedelta(seconds=10.5)) == 1
    assert client.messages(sid).fetch().status == "sending"
    assert emulator.carrier.run_due(start + timedelta(seconds=20.5)) == 1
    assert client.messages(sid).fetch().status == "sent"
    assert emulator.carrier.run_due(start + timedelta(seconds=30.5)) == 1
    assert emulator.carrier.run_due(start + LATER) == 0
    assert statuses(httpserver) == [
        ("sending", None),
        ("sent", None),
        ("delivered", None),
    ]


def test_messaging_service_goes_accepted_then_queued(
    emulator: Emulator, twilio_client: Client, httpserver: HTTPServer, callbacks: str
) -> None:
    send(twilio_client, callbacks, from_=None, messaging_service_sid=SERVICE_SID)
    assert emulator.carrier.run_due(later()) == 4
    assert [s for s, _ in statuses(httpserver)] == [
        "queued",
        "sending",
        "sent",
        "delivered",
    ]
    posted = requests_to(httpserver, "/status")
    assert {r.form["MessagingServiceSid"] for r in posted} == {SERVICE_SID}
    # The sender is chosen when the message leaves "accepted": every callback
    # names it.
    assert {r.form["From"] for r in posted} == {NUMBER}


@pytest.mark.parametrize(
    ("to", "media", "expected"),
    [
        pytest.param(
            FAY.number,
            None,
            [("sending", None), ("sent", None), ("undelivered", "30003")],
            id="phone off",
        ),
        pytest.param(
            GIL.number,
            None,
            [("sending", None), ("failed", "30005")],
            id="no such phone",
        ),
        pytest.param(
            CHLOE.number,
            [PNG],
            [("sending", None), ("sent", None), ("undelivered", "30011")],
            id="picture to a phone without MMS",
        ),
        pytest.param(
            CHLOE.number,
            None,
            [("sending", None), ("sent", None), ("delivered", None)],
            id="text to a phone without MMS",
        ),
        pytest.param(
            "+4915123456789",
            [PNG],
            [("sending", None), ("sent", None), ("delivered", None)],
            id="picture outside US/CA: converted",
        ),
        pytest.param(
            "+16135550123",
            [PNG],
            [("sending", None), ("sent", None), ("delivered", None)],
            id="picture to Canada",
        ),
    ],
)
def test_fates(
    emulator: Emulator,
    twilio_client: Client,
    httpserver: HTTPServer,
    callbacks: str,
    to: str,
    media: list[str] | None,
    expected: list[tuple[str, str | None]],
) -> None:
    sid = send(twilio_client, callbacks, to=to, media_url=media).sid
    emulator.carrier.run_due(later())
    assert statuses(httpserver) == expected
    for request in requests_to(httpserver, "/status"):
        assert_signed(request, callbacks)
    final, code = expected[-1]
    fetched = twilio_client.messages(sid).fetch()
    assert fetched.status == final
    assert fetched.error_code == (int(code) if code else None)
    if code == "30011":
        assert fetched.error_message.startswith("MMS not supported")


@pytest.mark.parametrize("service", [None, SERVICE_SID], ids=["from", "service"])
def test_mms_outside_us_and_canada_is_converted_to_sms_with_a_link(
    emulator: Emulator,
    twilio_client: Client,
    httpserver: HTTPServer,
    callbacks: str,
    service: str | None,
) -> None:
    # Twilio's MMS Converter, on by default, with or without a Messaging
    # Service (support articles 223179808 and 223181248): an SMS with a link,
    # delivered, still an MM message.
    message = send(
        twilio_client,
        callbacks,
        to="+4915123456789",
        from_=NUMBER if service is None else None,
        messaging_service_sid=service,
        media_url=[PNG],
    )
    emulator.carrier.run_due(later())
    assert statuses(httpserver)[-1] == ("delivered", None)
    assert message.sid.startswith("MM")
    stored = emulator.state.get_message(message.sid)
    assert stored is not None and stored.mms_converted
    assert stored.to_event()["converted"] is True
    assert twilio_client.messages(message.sid).fetch().error_code is None


def test_mms_inside_us_and_canada_is_not_converted(
    emulator: Emulator, twilio_client: Client
) -> None:
    sid = send(twilio_client, None, to="+16135550123", media_url=[PNG]).sid
    emulator.carrier.run_due(later())
    stored = emulator.state.get_message(sid)
    assert stored is not None and not stored.mms_converted


def test_without_callback_the_status_still_moves(
    emulator: Emulator, twilio_client: Client
) -> None:
    sid = send(twilio_client, None).sid
    assert emulator.carrier.run_due(later()) == 3
    assert twilio_client.messages(sid).fetch().status == "delivered"


def test_a_failing_callback_is_logged_and_the_message_moves_on(
    emulator: Emulator,
    twilio_client: Client,
    httpserver: HTTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    httpserver.expect_request("/status").respond_with_data("boom", 500)
    url = httpserver.url_for("/status")
    sid = send(twilio_client, url).sid
    with caplog.at_level(logging.WARNING, "textwire.sandbox.carrier"):
        assert emulator.carrier.run_due(later()) == 3
    assert twilio_client.messages(sid).fetch().status == "delivered"
    warnings = carrier_log(caplog)
    assert len(warnings) == 3
    assert "answered HTTP 500" in warnings[0]
    assert url in warnings[0]
    assert ANA.number not in "".join(warnings)  # numbers are masked


def test_an_unreachable_callback_is_logged(
    emulator: Emulator, twilio_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    send(twilio_client, f"http://127.0.0.1:{port}/status")
    with caplog.at_level(logging.WARNING, "textwire.sandbox.carrier"):
        assert emulator.carrier.run_due(later()) == 3
    [first, *_] = carrier_log(caplog)
    assert "could not be reached (connection refused)" in first
    assert "is your app running" in first


def test_an_exception_in_a_step_does_not_stop_the_others(
    emulator: Emulator,
    twilio_client: Client,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = send(twilio_client, "https://cb.example/status").sid
    second = send(twilio_client, None, to=BEN.number).sid
    calls: list[str] = []

    def explode(message: Any, status: str, code: int | None) -> None:
        calls.append(status)
        raise RuntimeError("callback machinery broke")

    monkeypatch.setattr(emulator.carrier, "_post_status", explode)
    with caplog.at_level(logging.ERROR, "textwire.sandbox.carrier"):
        assert emulator.carrier.run_due(later()) == 3  # only the second one's
    assert len(calls) == 3
    assert twilio_client.messages(second).fetch().status == "delivered"
    assert twilio_client.messages(first).fetch().status == "delivered"
    assert "callback machinery broke" in caplog.text


# -- inbound webhooks --------------------------------------------------------------


@pytest.fixture
def sms_app(httpserver: HTTPServer) -> str:
    httpserver.expect_request("/sms").respond_with_data(
        '<?xml version="1.0" encoding="UTF-8"?><Response/>', content_type="text/xml"
    )
    return httpserver.url_for("/sms")


def test_inbound_webhook_carries_the_full_parameter_set(
    make_emulator: EmulatorFactory, httpserver: HTTPServer, sms_app: str
) -> None:
    emulator = make_emulator(sms_url=sms_app)
    message = emulator.carrier.send_from_phone(ANA.number, NUMBER, "Hello there")

    [request] = requests_to(httpserver, "/sms")
    assert request.method == "POST"
    assert_signed(request, sms_app)
    form = request.form.to_dict()
    assert set(form) == INBOUND_KEYS
    assert form["MessageSid"] == form["SmsSid"] == form["SmsMessageSid"] == message.sid
    assert message.sid.startswith("SM")
    assert (form["From"], form["To"], form["Body"]) == (
        ANA.number,
        NUMBER,
        "Hello there",
    )
    assert (form["FromCountry"], form["ToCountry"]) == ("US", "US")
    assert (form["NumMedia"], form["NumSegments"]) == ("0", "1")
    assert form["SmsStatus"] == "received"
    assert form["AccountSid"] == ACCOUNT_SID
    assert request.headers["User-Agent"].startswith("TwilioProxy")
    assert request.headers["I-Twilio-Idempotency-Token"]

    assert message.direction == "inbound" and message.status == "received"
    assert emulator.state.get_message(message.sid) is message
    parsed = Inbound.from_form(form)
    assert (parsed.sid, parsed.from_, parsed.to, parsed.body) == (
        message.sid,
        ANA.number,
        NUMBER,
        "Hello there",
    )


def test_a_national_format_sender_arrives_without_country_code(
    make_emulator: EmulatorFactory, httpserver: HTTPServer, sms_app: str
) -> None:
    emulator = make_emulator(sms_url=sms_app)
    message = emulator.carrier.send_from_phone(BEN.number, "(415) 555-0100", "hi")
    [request] = requests_to(httpserver, "/sms")
    assert_signed(request, sms_app)
    assert request.form["From"] == "(415) 555-0142"
    assert request.form["FromCountry"] == "US"
    assert Inbound.from_form(request.form).from_ == BEN.number
    assert message.from_ == BEN.number  # the resource keeps E.164


def test_country_params_come_from_the_numbers_as_twilio_sends_them(
    make_emulator: EmulatorFactory, httpserver: HTTPServer, sms_app: str
) -> None:
    # A Canadian phone whose carrier sends national digits, mislabelled "US"
    # on the page: Twilio names the country of the number itself.
    toronto = VirtualPhone("+16135550123", "Toronto", "(613) 555-0123", "US")
    emulator = make_emulator(sms_url=sms_app, phones=(BEN, CHLOE, toronto))
    for phone in (BEN, CHLOE, toronto):
        emulator.carrier.send_from_phone(phone.number, NUMBER, "hi")
    forms = [r.form for r in requests_to(httpserver, "/sms")]
    got = [(f["From"], f["FromCountry"], f["ToCountry"]) for f in forms]
    assert got == [
        ("(415) 555-0142", "US", "US"),
        ("+447400123456", "GB", "US"),
        ("(613) 555-0123", "CA", "US"),
    ]
    # So the bot reads the national-format sender in the right country.
    assert Inbound.from_form(forms[2]).from_ == "+16135550123"


def test_inbound_pictures_are_served_by_the_emulator(
    make_emulator: EmulatorFactory, httpserver: HTTPServer, sms_app: str
) -> None:
    emulator = make_emulator(sms_url=sms_app)
    files = [(b"\x89PNG picture", "image/png"), (b"GIF89a", "image/gif")]
    message = emulator.carrier.send_from_phone(ANA.number, NUMBER, "", files)
    assert message.sid.startswith("MM")

    [request] = requests_to(httpserver, "/sms")
    assert_signed(request, sms_app)
    form = request.form
    assert form["NumMedia"] == "2"
    assert set(form) == INBOUND_KEYS | {
        "MediaUrl0",
        "MediaUrl1",
        "MediaContentType0",
        "MediaContentType1",
    }
    assert (form["MediaContentType0"], form["MediaContentType1"]) == (
        "image/png",
        "image/gif",
    )
    for index, (data, content_type) in enumerate(files):
        url = form[f"MediaUrl{index}"]
        assert url.startswith(f"{emulator.url}/2010-04-01/Accounts/{ACCOUNT_SID}/")
        with requests.get(url, timeout=5) as response:
            assert response.status_code == 401  # Twilio's media want the account
        with requests.get(url, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5) as response:
            assert response.status_code == 200
            assert response.content == data
            assert response.headers["Content-Type"] == content_type
    parsed = Inbound.from_form(form)
    assert [m.content_type for m in parsed.media] == ["image/png", "image/gif"]


def test_get_sms_method_sends_the_parameters_in_the_query(
    make_emulator: EmulatorFactory, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/sms", method="GET").respond_with_data("<Response/>")
    url = httpserver.url_for("/sms") + "?tenant=7"
    emulator = make_emulator()
    emulator.client().incoming_phone_numbers(emulator.number.sid).update(
        sms_url=url, sms_method="GET"
    )
    emulator.carrier.send_from_phone(ANA.number, NUMBER, "via GET & query")

    [request] = requests_to(httpserver, "/sms")
    assert request.method == "GET"
    assert request.form.to_dict() == {}
    assert request.args["tenant"] == "7"
    assert request.args["Body"] == "via GET & query"
    assert set(request.args) == INBOUND_KEYS | {"tenant"}
    assert_signed(request, request.url, {})


def test_fallback_url_is_called_when_the_app_fails(
    make_emulator: EmulatorFactory,
    httpserver: HTTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    httpserver.expect_request("/sms").respond_with_data("Internal error", 500)
    httpserver.expect_request("/fallback").respond_with_data("<Response/>")
    sms_url, fallback = httpserver.url_for("/sms"), httpserver.url_for("/fallback")
    emulator = make_emulator()
    emulator.client().incoming_phone_numbers(emulator.number.sid).update(
        sms_url=sms_url, sms_fallback_url=fallback
    )
    with caplog.at_level(logging.WARNING, "textwire.sandbox.carrier"):
        emulator.carrier.send_from_phone(ANA.number, NUMBER, "anyone there?")

    [first] = requests_to(httpserver, "/sms")
    [second] = requests_to(httpserver, "/fallback")
    assert_signed(second, fallback)
    assert second.form["ErrorCode"] == "11200"
    assert second.form["ErrorUrl"] == sms_url
    assert second.form["MessageSid"] == first.form["MessageSid"]
    assert "your SmsUrl" in caplog.text and "answered HTTP 500" in caplog.text


def test_no_fallback_on_a_4xx(
    make_emulator: EmulatorFactory,
    httpserver: HTTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    httpserver.expect_request("/sms").respond_with_data("Forbidden", 403)
    httpserver.expect_request("/fallback").respond_with_data("<Response/>")
    emulator = make_emulator()
    number = emulator.number
    number.sms_url = httpserver.url_for("/sms")
    number.sms_fallback_url = httpserver.url_for("/fallback")
    with caplog.at_level(logging.WARNING, "textwire.sandbox.carrier"):
        emulator.carrier.send_from_phone(ANA.number, NUMBER, "hi")
    assert requests_to(httpserver, "/fallback") == []
    text = caplog.text
    assert "answered HTTP 403" in text
    assert "X-Twilio-Signature" in text and "exactly this URL" in text
    assert ANA.number not in text and "+1415***0199" in text


def test_a_number_without_sms_url_logs_what_to_do(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "textwire.sandbox.carrier"):
        message = emulator.carrier.send_from_phone(ANA.number, NUMBER, "hi")
    assert emulator.state.get_message(message.sid) is message
    assert "has no SmsUrl" in caplog.text


def test_send_from_phone_refuses_nonsense(emulator: Emulator) -> None:
    carrier = emulator.carrier
    with pytest.raises(ValueError, match="not one of the sandbox's phones"):
        carrier.send_from_phone("+14155550177", NUMBER, "hi")
    with pytest.raises(ValueError, match="not one of the emulator's numbers"):
        carrier.send_from_phone(ANA.number, "+14155550177", "hi")
    with pytest.raises(ValueError, match="not valid"):
        carrier.send_from_phone(ANA.number, "nope", "hi")
    with pytest.raises(ValueError, match="empty"):
        carrier.send_from_phone(ANA.number, NUMBER, "")
    with pytest.raises(ValueError, match="at most 10"):
        carrier.send_from_phone(ANA.number, NUMBER, "", [(b"x", "image/png")] * 11)
    assert emulator.state.messages == {}


def test_twiml_message_answers_are_sent_as_replies(
    make_emulator: EmulatorFactory, httpserver: HTTPServer
) -> None:
    twiml = (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        f"<Message><Body>Thanks!</Body><Media>{PNG}</Media></Message>"
        "<Message>Second part</Message></Response>"
    )
    httpserver.expect_request("/sms").respond_with_data(twiml, content_type="text/xml")
    emulator = make_emulator(sms_url=httpserver.url_for("/sms"))
    inbound = emulator.carrier.send_from_phone(ANA.number, NUMBER, "hi")

    replies = [m for m in emulator.state.all_messages() if m.sid != inbound.sid][::-1]
    assert [(m.direction, m.body, m.to, m.from_) for m in replies] == [
        ("outbound-reply", "Thanks!", ANA.number, NUMBER),
        ("outbound-reply", "Second part", ANA.number, NUMBER),
    ]
    assert [m.url for m in replies[0].media] == [PNG]
    assert replies[0].sid.startswith("MM")
    emulator.carrier.run_due(later())
    assert {m.status for m in replies} == {"delivered"}


# -- STOP / START ------------------------------------------------------------------


def test_stop_blocks_sends_and_start_lifts_it(
    emulator: Emulator, twilio_client: Client
) -> None:
    emulator.carrier.send_from_phone(ANA.number, NUMBER, "  stop ")
    with pytest.raises(TwilioRestException) as caught:
        send(twilio_client, None)
    assert (caught.value.status, caught.value.code) == (400, 21610)

    emulator.carrier.send_from_phone(ANA.number, NUMBER, "Stop please")  # not a keyword
    with pytest.raises(TwilioRestException):
        send(twilio_client, None)

    emulator.carrier.send_from_phone(ANA.number, NUMBER, "START")
    assert send(twilio_client, None).status == "queued"

    emulator.carrier.send_from_phone(ANA.number, NUMBER, "unsubscribe")
    with pytest.raises(TwilioRestException):
        send(twilio_client, None)
    emulator.carrier.send_from_phone(ANA.number, NUMBER, "yes")
    assert send(twilio_client, None).status == "queued"


# -- the background thread ---------------------------------------------------------


def test_the_thread_delivers_webhooks_and_statuses(
    make_emulator: EmulatorFactory, httpserver: HTTPServer
) -> None:
    arrived = threading.Event()

    def sms(request: Request) -> Response:
        arrived.set()
        return Response("<Response/>", content_type="text/xml")

    httpserver.expect_request("/sms").respond_with_handler(sms)
    emulator = make_emulator(sms_url=httpserver.url_for("/sms"), step_delay=0.01)
    events: queue.Queue[dict[str, Any]] = emulator.state.subscribe()
    emulator.carrier.start()
    assert emulator.carrier.running
    try:
        emulator.carrier.send_from_phone(ANA.number, NUMBER, "hi")
        assert arrived.wait(10)
        sid = (
            emulator.client()
            .messages.create(to=ANA.number, from_=NUMBER, body="reply")
            .sid
        )
        seen: list[str] = []
        while "delivered" not in seen:
            event = events.get(timeout=10)
            if event["type"] == "message" and event["message"]["sid"] == sid:
                seen.append(event["message"]["status"])
        assert seen == ["queued", "sending", "sent", "delivered"]
    finally:
        emulator.state.unsubscribe(events)
        emulator.carrier.stop()
    assert not emulator.carrier.running


def test_the_thread_survives_a_failing_job(
    make_emulator: EmulatorFactory,
    httpserver: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    arrived = threading.Event()
    bodies: list[str] = []

    def sms(request: Request) -> Response:
        bodies.append(request.form["Body"])
        arrived.set()
        return Response("<Response/>", content_type="text/xml")

    httpserver.expect_request("/sms").respond_with_handler(sms)
    emulator = make_emulator(sms_url=httpserver.url_for("/sms"))
    carrier = emulator.carrier
    real = carrier._deliver_inbound
    failures = iter([RuntimeError("first webhook job broke")])

    def flaky(*args: Any) -> None:
        error = next(failures, None)
        if error is not None:
            raise error
        real(*args)

    monkeypatch.setattr(carrier, "_deliver_inbound", flaky)
    carrier.start()
    try:
        with caplog.at_level(logging.ERROR, "textwire.sandbox.carrier"):
            carrier.send_from_phone(ANA.number, NUMBER, "lost")
            carrier.send_from_phone(ANA.number, NUMBER, "arrives")
            assert arrived.wait(10)
        assert carrier.running
        assert "first webhook job broke" in caplog.text
        assert bodies == ["arrives"]
    finally:
        carrier.stop()

"""TwilioTransport against the real twilio-python client talking HTTP to a local
server (pytest-httpserver): what goes on the wire, and how answers map to errors.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.client import RemoteDisconnected
from typing import Any

import pytest
import requests
import urllib3.exceptions
from hypothesis import given
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.response import Response as TwilioResponse
from werkzeug import Request, Response

from textwire import codes
from textwire.config import Settings
from textwire.errors import (
    AmbiguousSendError,
    ConfigError,
    PermanentSendError,
    RateLimited,
    SendError,
    TemporarySendError,
)
from textwire.transports import OutboundMessage
from textwire.transports.twilio import (
    TwilioTransport,
    map_twilio_error,
    parse_retry_after,
)

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "test-auth-token-0123"
MSID = "MG" + "fedcba9876543210" * 2
TO = "+14155550123"
FROM = "+14155559876"
PUBLIC = "https://bot.example.com"
MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
MEDIA = ("https://bot.example.com/media/a.jpg", "https://bot.example.com/media/b.png")


# -- helpers -------------------------------------------------------------------


def twilio_message(**fields: Any) -> dict[str, Any]:
    """A Message resource shaped like Twilio's (twilio-facts §1.3)."""
    sid = fields.pop("sid", "SM" + "a" * 32)
    message: dict[str, Any] = {
        "account_sid": ACCOUNT_SID,
        "api_version": "2010-04-01",
        "body": "Hello!",
        "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
        "date_sent": None,
        "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000",
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": FROM,
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": None,
        "sid": sid,
        "status": "queued",
        "subresource_uris": {
            "media": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}/Media.json"
        },
        "to": TO,
        "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
    }
    message.update(fields)
    return message


def twilio_error(code: int, message: str, status: int = 400) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def rfc2822(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=False)


class Recorder:
    """A handler that keeps what each request carried and answers ``reply``."""

    def __init__(
        self,
        status: int = 201,
        payload: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.payload = twilio_message() if payload is None else payload
        self.headers = headers or {}
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: Request) -> Response:
        auth = request.authorization
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "args": request.args.copy(),
                "form": request.form.copy(),
                "content_type": request.headers.get("Content-Type", ""),
                "auth": (auth.username, auth.password) if auth else None,
            }
        )
        return Response(
            json.dumps(self.payload),
            status=self.status,
            headers=self.headers,
            content_type="application/json",
        )

    @property
    def only(self) -> dict[str, Any]:
        assert len(self.requests) == 1, self.requests
        return self.requests[0]


@pytest.fixture
def make_transport(
    httpserver: HTTPServer,
) -> Iterator[Callable[..., TwilioTransport]]:
    made: list[TwilioTransport] = []

    def make(**options: Any) -> TwilioTransport:
        options.setdefault("account_sid", ACCOUNT_SID)
        options.setdefault("auth_token", AUTH_TOKEN)
        options.setdefault("api_url", httpserver.url_for("").rstrip("/"))
        if "messaging_service_sid" not in options:
            options.setdefault("from_", FROM)
        transport = TwilioTransport(**options)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close()


def answer(httpserver: HTTPServer, recorder: Recorder, method: str = "POST") -> None:
    httpserver.expect_request(MESSAGES, method=method).respond_with_handler(recorder)


def assert_no_number(error: SendError) -> None:
    for text in (str(error), error.reason):
        assert TO not in text
        assert TO[2:] not in text  # not even without +1


# -- construction --------------------------------------------------------------


def test_needs_a_sender() -> None:
    with pytest.raises(ConfigError, match="TWILIO_PHONE_NUMBER"):
        TwilioTransport(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)


def test_needs_credentials() -> None:
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN"):
        TwilioTransport(account_sid=ACCOUNT_SID, auth_token="", from_=FROM)


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan")])
def test_rejects_bad_timeout(timeout: float) -> None:
    with pytest.raises(ConfigError, match="timeout"):
        TwilioTransport(
            account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_=FROM, timeout=timeout
        )


def test_rejects_api_url_without_scheme() -> None:
    with pytest.raises(ConfigError, match="http"):
        TwilioTransport(
            account_sid=ACCOUNT_SID,
            auth_token=AUTH_TOKEN,
            from_=FROM,
            api_url="api.twilio.com",
        )


def test_repr_hides_token() -> None:
    transport = TwilioTransport(
        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_=FROM
    )
    try:
        assert AUTH_TOKEN not in repr(transport)
    finally:
        transport.close()


# -- what goes on the wire -----------------------------------------------------


def test_keeps_a_connection_per_sending_thread() -> None:
    # Given a worker that sends 32 messages at once
    settings = Settings(
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_phone_number=FROM,
        worker_concurrency=32,
    )
    transport = TwilioTransport.from_settings(settings)
    try:
        # Then its HTTP client keeps 32 connections open to Twilio (the SDK
        # alone keeps CPUs + 4, and reconnects, TLS included, for the rest)
        for url in ("https://api.twilio.com", "http://127.0.0.1:8000"):
            adapter = transport._http.session.get_adapter(url)
            assert adapter._pool_maxsize == 32
    finally:
        transport.close()


def test_sends_one_post_with_all_fields(
    httpserver: HTTPServer, make_transport: Callable[..., TwilioTransport]
) -> None:
    recorder = Recorder(payload=twilio_message(num_media="2", num_segments="1"))
    answer(httpserver, recorder)
    transport = make_transport(public_url=PUBLIC + "/")

    receipt = transport.send(
        OutboundMessage(to=TO, body="Here are the photos", media=MEDIA, outbox_id=42)
    )

    request = recorder.only
    assert request["method"] == "POST"
    assert request["path"] == MESSAGES
    assert request["content_type"].startswith("application/x-www-form-urlencoded")
    assert request["auth"] == (ACCOUNT_SID, AUTH_TOKEN)
    form = request["form"]
    assert form["To"] == TO
    assert form["From"] == FROM
    assert "MessagingServiceSid" not in form
    assert form["Body"] == "Here are the photos"
    assert form.getlist("MediaUrl") == list(MEDIA)
    assert form["StatusCallback"] == PUBLIC + "/twilio/status?outbox=42"
    assert receipt.sid == "SM" + "a" * 32
    assert receipt.status == "queued"
    assert receipt.num_segments == 1
    assert receipt.num_media == 2
    assert len(httpserver.log) == 1
    httpserver.check_assertions()


def test_logs_never_show_the_number(
    httpserver: HTTPServer,
    make_transport: Callable[..., TwilioTransport],
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert logging.getLogger("twilio.http_client").level != logging.NOTSET
    caplog.set_level(logging.DEBUG)
    answer(httpserver, Recorder())
    answer(httpserver, Recorder(status=200, payload=list_page([])), method="GET")
    transport = make_transport()
    transport.send(OutboundMessage(to=TO, body="x"))
    transport.find_sent(to=TO, from_=FROM, since=datetime.now(UTC))
    # urllib3 (DEBUG) and the test server log URLs themselves; not ours to mute.
    ours = [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith(("textwire", "twilio"))
    ]
    assert ours  # textwire.transport logged the send, masked
    assert not [line for line in ours if TO[2:] in line]


def test_messaging_service_sends_no_from(
    httpserver: HTTPServer, make_transport: Callable[..., TwilioTransport]
) -> None:
    recorder = Recorder(
        payload=twilio_message(num_segments="0", messaging_service_sid=MSID)
    )
    answer(httpserver, recorder)
    transport = make_transport(messaging_service_sid=MSID)

    receipt = transport.send(OutboundMessage(to=TO, body="hi"))

    form = recorder.only["form"]
    assert form["MessagingServiceSid"] == MSID
    assert "From" not in form
    assert "StatusCallback" not in form  # no public_url, no callback
    # A Messaging Service reports 0 segments until it picks a sender.
    assert receipt.num_segments is None


def test_message_sender_wins_over_transport_default(
    httpserver: HTTPServer, make_transport: Callable[..., TwilioTransport]
) -> None:
    recorder = Recorder()
    answer(httpserver, recorder)
    transport = make_transport(from_=FROM, messaging_service_sid=MSID)
    other = "+14155550000"

    transport.send(OutboundMessage(to=TO, body="a", from_=other))
    transport.send(OutboundMessage(to=TO, body="b"))

    first, second = recorder.requests
    assert first["form"]["From"] == other
    assert "MessagingServiceSid" not in first["form"]
    assert second["form"]["MessagingServiceSid"] == MSID
    assert "From" not in second["form"]


def test_media_only_omits_body_and_own_callback_wins(
    httpserver: HTTPServer, make_transport: Callable[..., TwilioTransport]
) -> None:
    recorder = Recorder(payload=twilio_message(body="", num_media="1"))
    answer(httpserver, recorder)
    transport = make_transport(public_url=PUBLIC)
    callback = "https://elsewhere.example.com/cb?x=1"

    transport.send(OutboundMessage(to=TO, media=MEDIA[:1], status_callback=callback))

    form = recorder.only["form"]
    assert "Body" not in form
    assert form.getlist("MediaUrl") == [MEDIA[0]]
    assert form["StatusCallback"] == callback


def test_callback_without_outbox_id(
    httpserver: HTTPServer, make_transport: Callable[..., TwilioTransport]
) -> None:
    recorder = Recorder()
    answer(httpserver, recorder)
    make_transport(public_url=PUBLIC).send(OutboundMessage(to=TO, body="x"))
    assert recorder.only["form"]["StatusCallback"] == PUBLIC + "/twilio/status"


def test_process_region_and_edge_are_ignored(
    httpserver: HTTPServer,
    make_transport: Callable[..., TwilioTransport],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ClientBase does `environment or os.environ`: environment={} would read these
    # and rewrite 127.0.0.1 / localhost into an unreachable host.
    monkeypatch.setenv("TWILIO_REGION", "au1")
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    recorder = Recorder()
    answer(httpserver, recorder)
    make_transport().send(OutboundMessage(to=TO, body="x"))
    assert recorder.only["path"] == MESSAGES


# -- error mapping -------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, 21211),
        (400, 21610),
        (400, 21408),
        (400, 21606),
        (400, 21614),
        (400, 21617),
        (400, 21620),
        (400, 21623),
        (401, 20003),
    ],
)
def test_client_errors_are_permanent(
    httpserver: HTTPServer,
    make_transport: Callable[..., TwilioTransport],
    status: int,
    code: int,
) -> None:
    # Twilio's own messages quote the number: the reason must not.
    recorder = Recorder(
        status=status,
        payload=twilio_error(code, f"The 'To' number {TO} is not valid.", status),
    )
    answer(httpserver, recorder)
    transport = make_transport()

    with pytest.raises(PermanentSendError) as caught:
        transport.send(OutboundMessage(to=TO, body="secret body text"))

    error = caught.value
    assert type(error) is PermanentSendError
    assert error.code == code
    assert error.status == status
    assert error.reason == codes.describe(code)
    assert_no_number(error)
    assert "secret body text" not in str(error)
    assert isinstance(error.__cause__, TwilioRestException)
    assert len(recorder.requests) == 1


def test_opt_out_is_permanent_and_flagged(
    httpserver: HTTPServer, make_transport: Callable[..., TwilioTransport]
) -> None:
    answer(httpserver, Recorder(status=400, payload=twilio_error(21610, "STOP")))
    with pytest.raises(PermanentSendError) as caught:
        make_transport().send(OutboundMessage(to=TO, body="x"))
    assert caught.value.code is not None
    assert codes.CODES[caught.value.code].opt_out


def test_error_without_twilio_code(
    httpserver: HTTPServer, make_transport: Callable[..., TwilioTransport]
) -> None:
    answer(httpserver, Recorder(status=404, payload={"message": "nope"}))
    with pytest.raises(PermanentSendError) as caught:
        make_transport().send(OutboundMessage(to=TO, body="x"))
    # The SDK puts the HTTP status into .code when the body has none.
    assert caught.value.code is None
    assert caught.value.status == 404


def test_429_with_retry_after(
    httpserver: HTTPServer, make_transport: Callable[..., TwilioTransport]
) -> None:
    answer(
        httpserver,
        Recorder(
            status=429,
            payload=twilio_error(20429, "Too Many Requests", 429),
            headers={"Retry-After": "7"},
        ),
    )
    with pytest.raises(RateLimited) as caught:
        make_transport().send(OutboundMessage(to=TO, body="x"))
    assert caught.value.retry_after == 7
    assert caught.value.code == 20429
    assert caught.value.status == 429


def test_429_without_retry_after(
    httpserver: HTTPServer, make_transport: Callable[..., TwilioTransport]
) -> None:
    answer(
        httpserver,
        Recorder(status=429, payload=twilio_error(20429, "Too Many Requests", 429)),
    )
    with pytest.raises(RateLimited) as caught:
        make_transport().send(OutboundMessage(to=TO, body="x"))
    assert caught.value.retry_after is None


def test_retry_after_is_per_thread(
    httpserver: HTTPServer, make_transport: Callable[..., TwilioTransport]
) -> None:
    """A 429's header is read from the same thread's response, not another's."""
    answer(
        httpserver,
        Recorder(status=429, payload=twilio_error(20429, "x", 429)),
    )
    transport = make_transport()
    transport._http._local.headers = {"Retry-After": "99"}  # another send's leftover
    with pytest.raises(RateLimited) as caught:
        transport.send(OutboundMessage(to=TO, body="x"))
    assert caught.value.retry_after is None

    seen: list[str | None] = []
    worker = threading.Thread(
        target=lambda: seen.append(transport._http.last_header("Retry-After"))
    )
    transport._http._local.headers = {"Retry-After": "5"}
    worker.start()
    worker.join(timeout=5)
    assert seen == [None]


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_temporary(
    httpserver: HTTPServer,
    make_transport: Callable[..., TwilioTransport],
    status: int,
) -> None:
    answer(httpserver, Recorder(status=status, payload={"message": "oops"}))
    with pytest.raises(TemporarySendError) as caught:
        make_transport().send(OutboundMessage(to=TO, body="x"))
    assert type(caught.value) is TemporarySendError
    assert caught.value.status == status
    assert caught.value.code is None


def test_non_json_error_body(
    httpserver: HTTPServer, make_transport: Callable[..., TwilioTransport]
) -> None:
    httpserver.expect_request(MESSAGES).respond_with_data(
        "<html>Bad Gateway</html>", status=502, content_type="text/html"
    )
    with pytest.raises(TemporarySendError) as caught:
        make_transport().send(OutboundMessage(to=TO, body="x"))
    assert caught.value.status == 502


def test_unreadable_success_body_is_ambiguous(
    httpserver: HTTPServer, make_transport: Callable[..., TwilioTransport]
) -> None:
    httpserver.expect_request(MESSAGES).respond_with_data(
        "not json", status=201, content_type="application/json"
    )
    with pytest.raises(AmbiguousSendError):
        make_transport().send(OutboundMessage(to=TO, body="x"))


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_connection_refused_is_temporary(
    make_transport: Callable[..., TwilioTransport],
) -> None:
    transport = make_transport(api_url=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(TemporarySendError) as caught:
        transport.send(OutboundMessage(to=TO, body="x"))
    assert type(caught.value) is TemporarySendError
    assert "nothing was sent" in caught.value.reason
    assert isinstance(caught.value.__cause__, requests.exceptions.ConnectionError)
    assert_no_number(caught.value)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # let the blocked server handler finish before the next test


def test_read_timeout_is_ambiguous(
    httpserver: HTTPServer,
    make_transport: Callable[..., TwilioTransport],
    gate: threading.Event,
) -> None:
    received = threading.Event()

    def slow(request: Request) -> Response:
        received.set()
        gate.wait(timeout=3)
        return Response(json.dumps(twilio_message()), status=201)

    httpserver.expect_request(MESSAGES).respond_with_handler(slow)
    transport = make_transport(timeout=0.5)

    with pytest.raises(AmbiguousSendError) as caught:
        transport.send(OutboundMessage(to=TO, body="x"))

    assert received.is_set()  # the request did reach "Twilio"
    assert isinstance(caught.value.__cause__, requests.exceptions.ReadTimeout)
    assert "may exist" in caught.value.reason
    assert_no_number(caught.value)


def test_connection_dropped_after_request_is_ambiguous(
    make_transport: Callable[..., TwilioTransport],
) -> None:
    """The server reads the whole request, then hangs up without answering."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(5)
    port = listener.getsockname()[1]
    got: list[bytes] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            got.append(data)

    server = threading.Thread(target=serve)
    server.start()
    try:
        transport = make_transport(api_url=f"http://127.0.0.1:{port}")
        with pytest.raises(AmbiguousSendError) as caught:
            transport.send(OutboundMessage(to=TO, body="x"))
    finally:
        server.join(timeout=5)
        listener.close()
    assert got and got[0].startswith(b"POST ")
    assert isinstance(caught.value.__cause__, requests.exceptions.ConnectionError)


# -- map_twilio_error on synthetic exceptions ----------------------------------


def _refused() -> requests.exceptions.ConnectionError:
    reason = urllib3.exceptions.NewConnectionError(
        None,  # type: ignore[arg-type]
        "Failed to establish a new connection: [Errno 111] Connection refused",
    )
    return requests.exceptions.ConnectionError(
        urllib3.exceptions.MaxRetryError(None, "/x", reason)  # type: ignore[arg-type]
    )


def _unresolvable() -> requests.exceptions.ConnectionError:
    reason = urllib3.exceptions.NameResolutionError(
        "api.twilio.invalid",
        None,  # type: ignore[arg-type]
        socket.gaierror(-2, "Name or service not known"),
    )
    return requests.exceptions.ConnectionError(
        urllib3.exceptions.MaxRetryError(None, "/x", reason)  # type: ignore[arg-type]
    )


def _aborted() -> requests.exceptions.ConnectionError:
    return requests.exceptions.ConnectionError(
        urllib3.exceptions.ProtocolError(
            "Connection aborted.", RemoteDisconnected("Remote end closed connection")
        )
    )


def _reset() -> requests.exceptions.ConnectionError:
    return requests.exceptions.ConnectionError(
        urllib3.exceptions.ProtocolError(
            "Connection aborted.", ConnectionResetError(104, "Connection reset by peer")
        )
    )


@pytest.mark.parametrize(
    ("make_exc", "expected"),
    [
        (_refused, TemporarySendError),
        (_unresolvable, TemporarySendError),
        (lambda: requests.exceptions.ConnectTimeout("connect"), TemporarySendError),
        (lambda: requests.exceptions.ReadTimeout("read"), AmbiguousSendError),
        (_aborted, AmbiguousSendError),
        (_reset, AmbiguousSendError),
        (lambda: requests.exceptions.ChunkedEncodingError("x"), AmbiguousSendError),
        (lambda: TwilioException("something odd"), TemporarySendError),
        (lambda: ValueError("Expecting value"), AmbiguousSendError),
    ],
)
def test_map_transport_failures(
    make_exc: Callable[[], BaseException], expected: type[SendError]
) -> None:
    error = map_twilio_error(make_exc())
    assert type(error) is expected


def test_map_passes_send_errors_through() -> None:
    original = PermanentSendError("already typed", code=21211)
    assert map_twilio_error(original) is original


def test_map_rest_exception_does_not_use_twilio_message() -> None:
    exc = TwilioRestException(
        400,
        f"/Accounts/{ACCOUNT_SID}/Messages.json",
        f"Unable to create record: The 'To' number {TO} is not a valid phone number.",
        21211,
        "POST",
    )
    error = map_twilio_error(exc)
    assert isinstance(error, PermanentSendError)
    assert error.code == 21211
    assert_no_number(error)


def test_map_code_20429_with_other_status_is_rate_limited() -> None:
    exc = TwilioRestException(400, "/x", "busy", 20429, "POST")
    error = map_twilio_error(exc, retry_after_header="3")
    assert isinstance(error, RateLimited)
    assert error.retry_after == 3


def test_map_page_errors() -> None:
    page_500 = TwilioException("Unable to fetch page", TwilioResponse(500, "{}", {}))
    assert type(map_twilio_error(page_500)) is TemporarySendError

    body = json.dumps(twilio_error(20003, "Authenticate", 401))
    page_401 = TwilioException("Unable to fetch page", TwilioResponse(401, body, {}))
    error = map_twilio_error(page_401)
    assert type(error) is TemporarySendError
    assert (error.code, error.status) == (20003, 401)

    page_429 = TwilioException(
        "Unable to fetch page",
        TwilioResponse(
            429, "{}", requests.structures.CaseInsensitiveDict({"retry-after": "2"})
        ),
    )
    limited = map_twilio_error(page_429)
    assert isinstance(limited, RateLimited)
    assert limited.retry_after == 2


# -- Retry-After ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7),
        (" 7 ", 7),
        ("1.5", 1.5),
        ("0", 0),
        (None, None),
        ("", None),
        ("-3", None),
        ("soon", None),
        ("inf", None),
        ("nan", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=now) == 90
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(earlier, now=now) == 0


@given(st.integers(min_value=0, max_value=10**9))
def test_parse_retry_after_integers(seconds: int) -> None:
    assert parse_retry_after(str(seconds)) == seconds


@given(st.text(max_size=40))
def test_parse_retry_after_never_raises(value: str) -> None:
    result = parse_retry_after(value)
    assert result is None or result >= 0


# -- find_sent -----------------------------------------------------------------


def list_page(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """A ListMessageResponse shaped like twilio-facts §1.6 (one page)."""
    uri = (
        f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        "?To=%2B14155550123&PageSize=50&Page=0"
    )
    return {
        "end": max(len(messages) - 1, 0),
        "first_page_uri": uri,
        "next_page_uri": None,
        "page": 0,
        "page_size": 50,
        "previous_page_uri": None,
        "start": 0,
        "uri": uri,
        "messages": messages,
    }


def test_find_sent(
    httpserver: HTTPServer, make_transport: Callable[..., TwilioTransport]
) -> None:
    since = datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC)
    recorder = Recorder(
        status=200,
        payload=list_page(
            [
                twilio_message(
                    sid="SM" + "1" * 32,
                    body="the reply",
                    num_media="2",
                    status="sent",
                    date_created=rfc2822(since + timedelta(seconds=5)),
                ),
                twilio_message(  # inside the 60 s slack: kept
                    sid="SM" + "2" * 32,
                    date_created=rfc2822(since - timedelta(seconds=30)),
                ),
                twilio_message(  # earlier that day: dropped
                    sid="SM" + "3" * 32,
                    date_created=rfc2822(since - timedelta(hours=2)),
                ),
            ]
        ),
    )
    answer(httpserver, recorder, method="GET")

    found = make_transport().find_sent(to=TO, from_=FROM, since=since)

    args = recorder.only["args"]
    assert args["To"] == TO
    assert args["From"] == FROM
    assert args["DateSent>"] == "2026-12-01T00:00:00Z"
    assert args["PageSize"] == "50"
    assert [record.sid for record in found] == ["SM" + "1" * 32, "SM" + "2" * 32]
    first = found[0]
    assert first.to == TO
    assert first.from_ == FROM
    assert first.body == "the reply"
    assert first.num_media == 2
    assert first.status == "sent"
    assert first.date_created == since + timedelta(seconds=5)


def test_find_sent_without_from_and_near_midnight(
    httpserver: HTTPServer, make_transport: Callable[..., TwilioTransport]
) -> None:
    recorder = Recorder(status=200, payload=list_page([]))
    answer(httpserver, recorder, method="GET")
    since = datetime(2026, 12, 2, 0, 0, 20, tzinfo=UTC)

    assert make_transport().find_sent(to=TO, from_=None, since=since) == []

    args = recorder.only["args"]
    assert "From" not in args
    assert args["DateSent>"] == "2026-12-01T00:00:00Z"  # the slack crosses midnight


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (500, {}, TemporarySendError),
        (401, {}, TemporarySendError),
        (429, {"Retry-After": "4"}, RateLimited),
    ],
)
def test_find_sent_errors(
    httpserver: HTTPServer,
    make_transport: Callable[..., TwilioTransport],
    status: int,
    headers: dict[str, str],
    expected: type[SendError],
) -> None:
    answer(
        httpserver,
        Recorder(
            status=status, payload=twilio_error(20003, "x", status), headers=headers
        ),
        method="GET",
    )
    with pytest.raises(TemporarySendError) as caught:
        make_transport().find_sent(to=TO, from_=FROM, since=datetime.now(UTC))
    assert type(caught.value) is expected
    assert caught.value.status == status
    if expected is RateLimited:
        assert isinstance(caught.value, RateLimited)
        assert caught.value.retry_after == 4


def test_find_sent_connection_refused(
    make_transport: Callable[..., TwilioTransport],
) -> None:
    transport = make_transport(api_url=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(TemporarySendError):
        transport.find_sent(to=TO, from_=FROM, since=datetime.now(UTC))


# -- concurrency ---------------------------------------------------------------


def test_shared_by_threads(
    httpserver: HTTPServer, make_transport: Callable[..., TwilioTransport]
) -> None:
    recorder = Recorder()
    answer(httpserver, recorder)
    transport = make_transport()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            transport.send(OutboundMessage(to=TO, body=f"n{n}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert errors == []
    assert sorted(r["form"]["Body"] for r in recorder.requests) == [
        f"n{n}" for n in range(6)
    ]


def test_importing_transports_does_not_import_twilio() -> None:
    import subprocess
    import sys

    code = (
        "import sys, textwire.transports; "
        "assert 'twilio' not in sys.modules, 'twilio imported'"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr

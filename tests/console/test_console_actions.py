"""The operator's outbox actions against the real send worker and a local
stand-in for Twilio's API: a retry is reconciled before anything is sent (it
adopts a message Twilio already has, and sends only when Twilio has none), a
cancel keeps a queued row from ever being sent; and inbound media shown from
the console, fetched with the credentials and served from the copy."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from textwire.config import Settings
from textwire.service import queue_message
from textwire.storage.sql import SqlStore
from textwire.testing import make_inbound
from textwire.web.console import ConsoleConfig, _stream
from textwire.worker import SendWorker

from ..conftest import ACCOUNT_SID, AUTH_TOKEN, BOT_NUMBER, TwilioAPI
from ..sandbox.browser_fixtures import tiny_png
from .conftest import Operator

ANA = "+14155550199"
SERVER_ERROR = (500, {"code": 20500, "message": "Internal Server Error"}, {})


def failed_row(
    store: SqlStore, settings: Settings, api: TwilioAPI, worker: SendWorker
) -> int:
    """A message whose every attempt got a 500: failed after the last one."""
    (row,) = queue_message(store, to=ANA, body="Your order shipped", settings=settings)
    api.failures.extend([SERVER_ERROR] * settings.max_send_attempts)
    at = datetime.now(UTC)
    for step in range(settings.max_send_attempts):
        worker.run_once(now=at + timedelta(minutes=10 * step))
    entry = store.console.outbox_row(row)
    assert entry is not None and entry.status == "failed"
    return row


def test_retry_sends_once_when_twilio_has_no_trace_of_it(
    console: Operator,
    store: SqlStore,
    settings: Settings,
    twilio_api: TwilioAPI,
    send_worker: SendWorker,
) -> None:
    row = failed_row(store, settings, twilio_api, send_worker)
    html = console.client.get("/console/outbox").text
    assert f'data-row="{row}" data-status="failed"' in html
    assert "20500" in html or "Internal Server Error" in html
    assert console.post(f"/console/outbox/{row}/retry").status_code == 303
    entry = store.console.outbox_row(row)
    assert entry is not None and entry.status == "unknown" and entry.attempts == 0
    send_worker.run_once(now=datetime.now(UTC) + timedelta(hours=1))
    # Looked up in Twilio's list first, then sent: one create in all.
    methods = [r["method"] for r in twilio_api.requests]
    assert methods[-2:] == ["GET", "POST"]
    assert len(twilio_api.created) == 1
    entry = store.console.outbox_row(row)
    assert entry is not None and entry.status == "sent"
    (message,) = store.messages.all("outbound")
    assert message["status"] == "queued" and message["sid"]
    # A second retry is refused: the row is not failed any more.
    again = console.post_json(f"/console/outbox/{row}/retry")
    assert again.status_code == 409


def test_retry_adopts_the_message_twilio_already_has(
    console: Operator,
    store: SqlStore,
    settings: Settings,
    twilio_api: TwilioAPI,
    send_worker: SendWorker,
) -> None:
    # Given a failed row whose last attempt did reach Twilio after all (its
    # answer was lost): Twilio's list has the message.
    row = failed_row(store, settings, twilio_api, send_worker)
    when = format_datetime(datetime.now(UTC).replace(microsecond=0))
    twilio_api.created.append(
        {
            "sid": "SM" + "f" * 32,
            "to": ANA,
            "from": BOT_NUMBER,
            "body": "Your order shipped",
            "status": "delivered",
            "num_media": "0",
            "num_segments": "1",
            "direction": "outbound-api",
            "date_created": when,
            "date_sent": when,
            "date_updated": when,
        }
    )
    creates_before = len(twilio_api.creates)
    console.post(f"/console/outbox/{row}/retry")
    send_worker.run_once(now=datetime.now(UTC) + timedelta(hours=1))
    # Then it is adopted, and nothing is sent again.
    assert len(twilio_api.creates) == creates_before
    entry = store.console.outbox_row(row)
    assert entry is not None and entry.status == "sent"
    (message,) = store.messages.all("outbound")
    assert message["sid"] == "SM" + "f" * 32


def test_cancel_keeps_a_queued_row_from_being_sent(
    console: Operator,
    store: SqlStore,
    settings: Settings,
    twilio_api: TwilioAPI,
    send_worker: SendWorker,
) -> None:
    (row,) = queue_message(store, to=ANA, body="never mind", settings=settings)
    assert 'data-testid="cancel"' in console.client.get("/console/outbox").text
    assert console.post(f"/console/outbox/{row}/cancel").status_code == 303
    send_worker.run_once()
    assert twilio_api.creates == []
    entry = store.console.outbox_row(row)
    assert entry is not None and entry.status == "cancelled"
    assert store.messages.all("outbound")[0]["status"] == "canceled"
    # A row no longer queued cannot be cancelled.
    (sent,) = queue_message(store, to=ANA, body="hello", settings=settings)
    send_worker.run_once()
    assert console.post_json(f"/console/outbox/{sent}/cancel").status_code == 409
    assert len(twilio_api.creates) == 1


# -- inbound media in the console ------------------------------------------------


@pytest.fixture
def media_server(httpserver: HTTPServer) -> Iterator[dict[str, object]]:
    """Twilio's media endpoint: Basic auth or 401; ``state["gone"]`` → 404."""
    png = tiny_png(4, 4)
    state: dict[str, object] = {"gone": False, "png": png, "seen": []}
    path = (
        f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM{'3' * 32}/Media/ME{'4' * 32}"
    )

    def handle(request: Request) -> Response:
        auth = request.authorization
        state["seen"].append(auth.username if auth else None)  # type: ignore[attr-defined]
        if auth is None or (auth.username, auth.password) != (ACCOUNT_SID, AUTH_TOKEN):
            return Response("", 401, {"WWW-Authenticate": "Basic"})
        if state["gone"]:
            return Response("", 404)
        return Response(png, 200, content_type="image/png")

    httpserver.expect_request(path).respond_with_handler(handle)
    state["url"] = httpserver.url_for(path)
    yield state


def test_inbound_media_is_served_with_the_credentials_then_from_the_copy(
    console: Operator,
    console_settings: Settings,
    store: SqlStore,
    media_server: dict[str, object],
    tmp_path: Path,
) -> None:
    app = console.client.application
    config: ConsoleConfig = app.extensions["textwire_console"]
    # The media of this test live on a local server standing in for Twilio.
    config.media.api_url = str(media_server["url"]).split("/2010-04-01")[0]
    msg = make_inbound(
        "my photo",
        from_=ANA,
        media=[str(media_server["url"])],
        MessageSid="MM" + "3" * 32,
        MediaContentType0="image/png",
    )
    store.inbox.record(msg, datetime.now(UTC))
    message_id = store.messages.all("inbound")[-1]["id"]
    cid = store.console.contact_by_phone(ANA, datetime.now(UTC)).id
    html = console.client.get(f"/console/c/{cid}").text
    assert f'src="/console/media/{message_id}/0"' in html
    response = console.client.get(f"/console/media/{message_id}/0")
    assert response.status_code == 200
    assert response.data == media_server["png"]
    assert response.content_type == "image/png"
    assert response.headers["Content-Security-Policy"].startswith("sandbox")
    assert AUTH_TOKEN.encode() not in response.data
    assert media_server["seen"] == [ACCOUNT_SID]
    # Twilio deletes it: the console still shows the copy, without asking.
    media_server["gone"] = True
    again = console.client.get(f"/console/media/{message_id}/0")
    assert again.status_code == 200 and again.data == media_server["png"]
    assert media_server["seen"] == [ACCOUNT_SID]
    assert (tmp_path / "media" / ("MM" + "3" * 32) / "0").is_file()
    assert console.client.get(f"/console/media/{message_id}/5").status_code == 404


def test_the_event_stream_says_changed_when_the_view_changed() -> None:
    # Given a version that changes on the third look
    looks = iter(["a", "a", "b", "b"])
    auth = type("A", (), {"stopping": threading.Event()})()
    config = ConsoleConfig(auth=auth, media=None, poll=0.001, heartbeat=60)  # type: ignore[arg-type]
    stream = _stream(config, lambda: next(looks), None)
    assert next(stream).startswith("retry:")
    # Then the stream announces the change once
    assert next(stream).startswith("event: changed")
    auth.stopping.set()
    assert list(stream) == []


def test_event_streams_are_capped_per_process_and_give_their_slot_back(
    console: Operator,
) -> None:
    config: ConsoleConfig = console.client.application.extensions["textwire_console"]
    config.max_streams = 1
    first = console.client.get("/console/events", buffered=False)
    assert first.status_code == 200
    assert first.mimetype == "text/event-stream"
    # The webhooks need the server's threads more: a second page polls.
    second = console.client.get("/console/events", buffered=False)
    assert second.status_code == 503 and second.headers["Retry-After"] == "5"
    first.close()
    third = console.client.get("/console/events", buffered=False)
    assert third.status_code == 200
    third.close()

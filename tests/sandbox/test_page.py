"""The phone page's HTML and JSON endpoints, through Flask's test client."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from tests.sandbox.browser_fixtures import (
    NATIONAL_PHONE,
    SANDBOX_NUMBER,
    UK_PHONE,
    US_PHONE,
    sandbox_settings,
    serve_sandbox,
    tiny_png,
)
from textwire.sandbox.app import Sandbox, create_sandbox
from textwire.sandbox.page import MAX_PICTURE_BYTES, sniff_image
from textwire.sandbox.rules import new_sid
from textwire.sandbox.state import EmMessage


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    """An emulator-only sandbox, not served: the page's endpoints alone."""
    sandbox = create_sandbox(
        sandbox_settings(tmp_path), emulator_only=True, port=8123, step_delay=0
    )
    yield sandbox
    sandbox.stop()


@pytest.fixture
def client(box: Sandbox) -> FlaskClient:
    return box.app.test_client()


def messages_url(number: str) -> str:
    return f"/sandbox/api/phones/{number}/messages"


def post_message(
    client: FlaskClient, number: str, body: str = "", files: list[Any] | None = None
) -> Any:
    data: dict[str, Any] = {"body": body}
    if files:
        data["media"] = files
    return client.post(
        messages_url(number), data=data, content_type="multipart/form-data"
    )


# -- the page -------------------------------------------------------------------


def test_page_shows_account_number_and_phones(
    client: FlaskClient, box: Sandbox
) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert box.state.account_sid in html
    assert "+1 415-555-0100" in html
    assert "http://127.0.0.1:8123" in html
    found = re.search(r'id="sandbox-config"[^>]*>(.*?)</script>', html, re.S)
    assert found
    config = json.loads(found.group(1))
    assert config["number"] == SANDBOX_NUMBER
    assert config["emulator_only"] is True
    assert [p["number"] for p in config["phones"]][:3] == [
        US_PHONE,
        NATIONAL_PHONE,
        UK_PHONE,
    ]


def test_page_loads_nothing_from_elsewhere(client: FlaskClient) -> None:
    html = client.get("/").get_data(as_text=True)
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert refs, "the page links its script and stylesheet"
    assert all(ref.startswith(("/", "data:")) for ref in refs), refs
    for ref in refs:
        if ref.startswith("/"):
            asset = client.get(ref)
            assert asset.status_code == 200, ref
            text = asset.get_data(as_text=True)
            assert "http://" not in text.replace("http://127.0.0.1", "")
            assert "https://" not in text
            asset.close()


def test_static_files_are_shipped() -> None:
    import textwire.sandbox

    root = Path(textwire.sandbox.__file__).parent
    for name in (
        "templates/sandbox/index.html",
        "static/sandbox/sandbox.js",
        "static/sandbox/sandbox.css",
    ):
        assert (root / name).is_file(), name


# -- segments -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "encoding", "characters", "segments", "per_segment", "unicode"),
    [
        ("", "GSM-7", 0, 1, 160, []),
        ("hello", "GSM-7", 5, 1, 160, []),
        ("€", "GSM-7", 2, 1, 160, []),
        ("x" * 161, "GSM-7", 161, 2, 153, []),
        ("Hi 😀", "UCS-2", 5, 1, 70, ["😀"]),
        ("Café ☕ 😀", "UCS-2", 9, 1, 70, ["☕", "😀"]),
    ],
)
def test_segments_are_counted_by_twilios_rules(
    client: FlaskClient,
    body: str,
    encoding: str,
    characters: int,
    segments: int,
    per_segment: int,
    unicode: list[str],
) -> None:
    data = client.get("/sandbox/api/segments", query_string={"body": body}).get_json()
    assert data["encoding"] == encoding
    assert data["characters"] == characters
    assert data["segments"] == segments
    assert data["per_segment"] == per_segment
    assert data["unicode_chars"] == unicode
    assert data["too_long"] is False


def test_segments_flag_a_body_over_1600(client: FlaskClient) -> None:
    data = client.get(
        "/sandbox/api/segments", query_string={"body": "😀" * 801}
    ).get_json()
    assert data["length"] == 1602
    assert data["too_long"] is True


# -- phones and threads ----------------------------------------------------------


def test_phones_list(client: FlaskClient) -> None:
    phones = client.get("/sandbox/api/phones").get_json()["phones"]
    by_number = {p["number"]: p for p in phones}
    assert by_number[NATIONAL_PHONE]["display"] == "(415) 555-0142"
    assert by_number[UK_PHONE]["mms"] is False
    assert by_number[UK_PHONE]["country_name"] == "United Kingdom"
    assert {p["country"] for p in phones} >= {"US", "GB", "DE", "BR"}
    assert any(p["fate"] == "undelivered" for p in phones)


def test_sending_text_from_a_phone(client: FlaskClient, box: Sandbox) -> None:
    response = post_message(client, US_PHONE, "hello bot")
    assert response.status_code == 201
    message = response.get_json()["message"]
    assert message["direction"] == "inbound"
    assert message["from"] == US_PHONE
    assert message["to"] == SANDBOX_NUMBER
    assert message["phone"] == US_PHONE
    assert message["body"] == "hello bot"

    thread = client.get(messages_url(US_PHONE)).get_json()
    assert [m["sid"] for m in thread["messages"]] == [message["sid"]]
    assert thread["phone"]["number"] == US_PHONE
    assert client.get(messages_url(UK_PHONE)).get_json()["messages"] == []


def test_phone_in_the_url_may_be_written_any_way(client: FlaskClient) -> None:
    assert post_message(client, "%2B14155550199", "hi").status_code == 201
    response = client.get(messages_url("(415) 555-0199"))
    assert response.status_code == 200
    assert len(response.get_json()["messages"]) == 1


def test_sending_a_picture(client: FlaskClient, box: Sandbox) -> None:
    png = tiny_png()
    response = post_message(client, US_PHONE, "", [(_io(png), "dot.png")])
    assert response.status_code == 201, response.get_json()
    message = response.get_json()["message"]
    (media,) = message["media"]
    assert media["content_type"] == "image/png"
    # The page draws it from its own route: the Twilio media URL (what the
    # bot's webhook gets) wants the account's credentials, a browser has none.
    assert media["url"].startswith("/sandbox/api/media/ME")
    picture = client.get(media["url"])
    assert picture.status_code == 200
    assert picture.data == png
    assert picture.mimetype == "image/png"
    assert picture.headers["X-Content-Type-Options"] == "nosniff"
    (stored,) = box.state.get_message(message["sid"]).media
    assert stored.url.startswith(box.url + "/2010-04-01/")
    assert client.get(stored.url.removeprefix(box.url)).status_code == 401
    assert client.get("/sandbox/api/media/MEnope").status_code == 404


@pytest.mark.parametrize(
    ("number", "body", "files", "error"),
    [
        ("+14155550000", "hi", None, "no virtual phone"),
        ("not-a-number", "hi", None, "is not a phone number"),
        (US_PHONE, "", None, "type a message or attach a picture"),
        (US_PHONE, "   ", None, "type a message or attach a picture"),
        (US_PHONE, "x" * 1601, None, "at most 1600 characters"),
        (US_PHONE, "😀" * 801, None, "at most 1600 characters"),
        (US_PHONE, "", [(b"hello, not a picture", "notes.txt")], "is not a PNG"),
        (US_PHONE, "", [(b"", "empty.png")], "is empty"),
        (US_PHONE, "", [(tiny_png(), "p.png")] * 11, "at most 10 pictures"),
    ],
)
def test_bad_input_is_a_400_with_a_reason(
    client: FlaskClient,
    box: Sandbox,
    number: str,
    body: str,
    files: list[tuple[bytes, str]] | None,
    error: str,
) -> None:
    uploads = [(_io(data), name) for data, name in files] if files else None
    response = post_message(client, number, body, uploads)
    assert response.status_code == 400
    assert response.mimetype == "application/json"
    assert error in response.get_json()["error"]
    assert box.state.all_messages() == []


def test_pictures_over_5_mb_are_refused(tmp_path: Path) -> None:
    # Over real HTTP: the test client leaks its spooled body when the app
    # refuses it unread.
    with serve_sandbox(tmp_path, emulator_only=True) as box:
        url = box.url + messages_url(US_PHONE)
        big = tiny_png() + b"\0" * MAX_PICTURE_BYTES
        response = requests.post(url, files={"media": ("big.png", big)}, timeout=10)
        assert response.status_code == 400
        assert "5 MB" in response.json()["error"]
        # Well over the limit: refused before it is read, still as JSON.
        huge = b"\0" * (MAX_PICTURE_BYTES + 512 * 1024)
        response = requests.post(url, files={"media": ("huge.png", huge)}, timeout=10)
        assert response.status_code == 400
        assert "5 MB" in response.json()["error"]
        assert box.state.all_messages() == []


def test_unknown_phone_thread_is_a_400(client: FlaskClient) -> None:
    response = client.get(messages_url("+14155550000"))
    assert response.status_code == 400
    assert "no virtual phone" in response.get_json()["error"]


def test_thread_explains_error_codes(client: FlaskClient, box: Sandbox) -> None:
    message = EmMessage(
        sid=new_sid("MM"),
        account_sid=box.state.account_sid,
        direction="outbound-api",
        from_=SANDBOX_NUMBER,
        to=UK_PHONE,
        body="hi",
        status="undelivered",
        error_code=30011,
        error_message="MMS not supported by the receiving phone number in this region",
    )
    box.state.add_message(message)
    (shown,) = client.get(messages_url(UK_PHONE)).get_json()["messages"]
    assert shown["reason"] == (
        "MMS not supported by the receiving phone number in this region"
    )
    assert shown["advice"].startswith("30011 MMS not supported")
    assert shown["phone"] == UK_PHONE


def test_sniff_image() -> None:
    assert sniff_image(tiny_png()) == "image/png"
    assert sniff_image(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff_image(b"GIF89a...") == "image/gif"
    assert sniff_image(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    assert sniff_image(b"<svg xmlns=...>") is None
    assert sniff_image(b"") is None


# -- events ---------------------------------------------------------------------


def _read_event(chunks: Iterator[bytes]) -> str:
    return next(chunks).decode()


def test_events_stream_messages_as_the_page_draws_them(
    client: FlaskClient, box: Sandbox
) -> None:
    response = client.get("/sandbox/api/events", buffered=False)
    try:
        assert response.status_code == 200
        assert response.mimetype == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        chunks = iter(response.response)
        assert _read_event(chunks).startswith("retry: ")
        box.carrier.send_from_phone(NATIONAL_PHONE, SANDBOX_NUMBER, "hi")
        event = _read_event(chunks)
        kind, data = event.strip().split("\n")
        assert kind == "event: message"
        message = json.loads(data.removeprefix("data: "))["message"]
        assert message["phone"] == NATIONAL_PHONE
        assert message["body"] == "hi"
    finally:
        response.close()
    assert box.state._subscribers == []


def test_events_send_heartbeats_and_end(client: FlaskClient, box: Sandbox) -> None:
    assert box.page is not None
    box.page.heartbeat = 0.05
    box.page.stream_seconds = 0.3
    response = client.get("/sandbox/api/events", buffered=False)
    try:
        chunks = list(response.response)  # ends by itself after stream_seconds
    finally:
        response.close()
    assert b": heartbeat\n\n" in chunks
    assert box.state._subscribers == []


def test_events_end_when_the_sandbox_stops(client: FlaskClient, box: Sandbox) -> None:
    response = client.get("/sandbox/api/events", buffered=False)
    try:
        chunks = iter(response.response)
        _read_event(chunks)
        box.close_streams()
        assert list(chunks) == []
    finally:
        response.close()


def _io(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def test_config_endpoint(client: FlaskClient, box: Sandbox) -> None:
    config = client.get("/sandbox/api/config").get_json()
    assert config["account_sid"] == box.state.account_sid
    assert config["auth_token"] == box.state.auth_token
    assert config["number"] == SANDBOX_NUMBER
    assert config["number_display"] == "+1 415-555-0100"
    assert config["api_url"] == box.url
    assert config["bot"] is None
    assert len(config["phones"]) == 6


def test_config_names_the_sandboxs_messaging_service(
    client: FlaskClient, box: Sandbox
) -> None:
    (service,) = client.get("/sandbox/api/config").get_json()["messaging_services"]
    assert service in box.state.services
    assert box.state.service_numbers(service) == [SANDBOX_NUMBER]
    assert service in client.get("/").get_data(as_text=True)


def test_the_service_sid_comes_from_the_settings(tmp_path: Path) -> None:
    sid = "MG" + "ab" * 16
    settings = sandbox_settings(tmp_path).replace(twilio_messaging_service_sid=sid)
    sandbox = create_sandbox(settings, emulator_only=True, port=8124)
    try:
        assert list(sandbox.state.services) == [sid]
    finally:
        sandbox.stop()


def test_a_converted_mms_shows_its_pictures_as_links(
    client: FlaskClient, box: Sandbox
) -> None:
    # No MMS to Germany: Twilio's MMS Converter sends an SMS with a link.
    berlin = "+4915123456789"
    credentials = f"{box.state.account_sid}:{box.state.auth_token}"
    auth = "Basic " + base64.b64encode(credentials.encode()).decode()
    created = client.post(
        f"/2010-04-01/Accounts/{box.state.account_sid}/Messages.json",
        data={
            "To": berlin,
            "From": SANDBOX_NUMBER,
            "Body": "the map",
            "MediaUrl": "https://example.com/map.png",
        },
        headers={"Authorization": auth},
    )
    assert created.status_code == 201
    box.carrier.run_due(datetime.now(UTC) + timedelta(hours=1))
    (shown,) = client.get(messages_url(berlin)).get_json()["messages"]
    assert (shown["status"], shown["converted"]) == ("delivered", True)
    assert shown["media"] == [
        {"url": "https://example.com/map.png", "content_type": "image/png"}
    ]

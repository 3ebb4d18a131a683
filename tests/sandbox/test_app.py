"""create_sandbox wiring, the whole loop over real HTTP, and `textwire sandbox`."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import phonenumbers
import pytest
import requests
from click.testing import CliRunner
from twilio.request_validator import RequestValidator

from tests.sandbox.browser_fixtures import (
    NATIONAL_PHONE,
    UK_PHONE,
    US_PHONE,
    replies_to,
    sandbox_settings,
    serve_sandbox,
    wait_for,
)
from tests.waiting import wait_for_server
from textwire.cli import main
from textwire.config import Settings
from textwire.errors import ConfigError
from textwire.sandbox.app import (
    DEFAULT_DATABASE_URL,
    DEFAULT_NUMBER,
    Sandbox,
    base_url,
    create_sandbox,
    default_phones,
)
from textwire.sandbox.state import VirtualPhone

SID = "AC" + "5a" * 16
TOKEN = "sandbox-test-token-0123456789abcd"


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    sandbox = create_sandbox(sandbox_settings(tmp_path), port=8124)
    yield sandbox
    sandbox.stop()


# -- wiring -----------------------------------------------------------------------


def test_one_app_serves_the_api_the_webhooks_and_the_page(box: Sandbox) -> None:
    client = box.app.test_client()
    numbers = client.get(
        f"/2010-04-01/Accounts/{box.state.account_sid}/IncomingPhoneNumbers.json",
        auth=(box.state.account_sid, box.state.auth_token),
    )
    assert numbers.status_code == 200
    (number,) = numbers.get_json()["incoming_phone_numbers"]
    assert number["phone_number"] == DEFAULT_NUMBER
    assert number["sms_url"] == "http://127.0.0.1:8124/twilio/sms"
    assert number["sms_method"] == "POST"
    assert client.get("/healthz").get_json()["status"] == "ok"
    assert client.get("/").status_code == 200
    with client.get("/media/logo.png") as logo:
        assert logo.status_code == 200


def test_the_bot_talks_to_the_emulator_with_signatures_on(box: Sandbox) -> None:
    settings = box.settings
    assert settings.twilio_api_url == box.url
    assert settings.public_url == box.url
    assert settings.validate_signatures is True
    assert box.transport is not None
    assert box.transport.api_url == box.url
    assert box.transport.public_url == box.url
    assert box.worker is not None and box.store is not None


def test_a_forged_webhook_is_refused(box: Sandbox) -> None:
    client = box.app.test_client()
    form = {
        "MessageSid": "SM" + "0" * 32,
        "AccountSid": box.state.account_sid,
        "From": US_PHONE,
        "To": box.number,
        "Body": "help",
        "NumMedia": "0",
    }
    forged = RequestValidator("another-token").compute_signature(
        box.url + "/twilio/sms", form
    )
    response = client.post(
        "/twilio/sms", data=form, headers={"X-Twilio-Signature": forged}
    )
    assert response.status_code == 403
    assert client.post("/twilio/sms", data=form).status_code == 403
    good = RequestValidator(box.state.auth_token).compute_signature(
        box.url + "/twilio/sms", form
    )
    response = client.post(
        "/twilio/sms", data=form, headers={"X-Twilio-Signature": good}
    )
    assert response.status_code == 200


def test_emulator_only_has_no_bot(tmp_path: Path) -> None:
    box = create_sandbox(sandbox_settings(tmp_path), emulator_only=True, port=8125)
    try:
        client = box.app.test_client()
        assert box.worker is None and box.store is None and box.transport is None
        assert client.post("/twilio/sms", data={"Body": "hi"}).status_code == 404
        assert client.get("/healthz").get_json()["mode"] == "emulator-only"
        number = box.state.number_by_phone(DEFAULT_NUMBER)
        assert number is not None and number.sms_url is None
        assert client.get("/").status_code == 200
        assert not (tmp_path / "sandbox.db").exists()
    finally:
        box.stop()


def test_credentials_are_generated_when_not_set(box: Sandbox) -> None:
    assert re.fullmatch(r"AC[0-9a-f]{32}", box.state.account_sid)
    assert re.fullmatch(r"[0-9a-f]{32}", box.state.auth_token)
    assert box.settings.twilio_account_sid == box.state.account_sid
    assert box.settings.twilio_auth_token == box.state.auth_token


def test_credentials_and_number_come_from_the_settings(tmp_path: Path) -> None:
    settings = sandbox_settings(
        tmp_path,
        twilio_account_sid=SID,
        twilio_auth_token=TOKEN,
        twilio_phone_number="(415) 555-0111",
        twilio_messaging_service_sid="MG" + "0" * 32,
        public_url="https://abc.ngrok.app",
        twilio_api_url="https://api.twilio.com",
    )
    box = create_sandbox(settings, port=8126)
    try:
        assert box.state.account_sid == SID
        assert box.state.auth_token == TOKEN
        assert box.number == "+14155550111"
        assert box.state.number_by_phone("+14155550111") is not None
        assert box.settings.public_url == "http://127.0.0.1:8126"
        assert box.settings.twilio_api_url == "http://127.0.0.1:8126"
        assert box.settings.twilio_messaging_service_sid is None
    finally:
        box.stop()


def test_an_invalid_number_setting_is_a_config_error(tmp_path: Path) -> None:
    settings = sandbox_settings(tmp_path, twilio_phone_number="555")
    with pytest.raises(ConfigError, match="TWILIO_PHONE_NUMBER"):
        create_sandbox(settings)


def test_database_defaults_to_a_file_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    box = create_sandbox(Settings(), port=8127)
    try:
        assert box.settings.database_url == DEFAULT_DATABASE_URL
        assert (tmp_path / "textwire-sandbox.db").is_file()
    finally:
        box.stop()
    explicit = f"sqlite:///{tmp_path / 'mine.db'}"
    box = create_sandbox(Settings(database_url=explicit), port=8127)
    try:
        assert box.settings.database_url == explicit
    finally:
        box.stop()


def test_default_phones_are_valid_and_varied() -> None:
    phones = default_phones()
    assert len({p.number for p in phones}) == len(phones)
    for phone in phones:
        parsed = phonenumbers.parse(phone.number)
        assert phonenumbers.is_valid_number(parsed), phone
        assert phonenumbers.region_code_for_number(parsed) == phone.country, phone
    assert len({p.country for p in phones}) >= 4
    assert any(not p.display.startswith("+") for p in phones)
    assert any(not p.mms for p in phones)
    assert any(p.fate != "delivered" for p in phones)
    assert phonenumbers.is_valid_number(phonenumbers.parse(DEFAULT_NUMBER))


def test_the_sandbox_number_is_not_also_a_phone(tmp_path: Path) -> None:
    phones = [
        VirtualPhone(DEFAULT_NUMBER, "me", DEFAULT_NUMBER, "US"),
        *default_phones(),
    ]
    box = create_sandbox(sandbox_settings(tmp_path), emulator_only=True, phones=phones)
    try:
        assert DEFAULT_NUMBER not in box.state.phones
    finally:
        box.stop()


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000"),
        ("0.0.0.0", "http://127.0.0.1:8000"),
        ("localhost", "http://localhost:8000"),
        ("::1", "http://[::1]:8000"),
        ("::", "http://127.0.0.1:8000"),
    ],
)
def test_base_url(host: str, url: str) -> None:
    assert base_url(host, 8000) == url


# -- the whole loop over HTTP ---------------------------------------------------------


def test_help_round_trip_over_http(tmp_path: Path) -> None:
    with serve_sandbox(tmp_path) as box:
        box.carrier.send_from_phone(US_PHONE, box.number, "help")
        reply = wait_for(
            lambda: [m for m in replies_to(box, US_PHONE) if m.status == "delivered"],
            what="the help reply to be delivered",
        )[0]
        assert len(reply.media) == 2
        assert reply.from_ == box.number
        assert box.store is not None
        (row,) = box.store.messages.all(direction="outbound")
        assert row["sid"] == reply.sid
        wait_for(
            lambda: (
                box.store is not None
                and box.store.messages.all(direction="outbound")[0]["status"]
                == "delivered"
            ),
            what="the bot to record delivered from the status callback",
        )


def test_national_format_sender_gets_the_reply_at_its_e164_number(
    tmp_path: Path,
) -> None:
    with serve_sandbox(tmp_path) as box:
        box.carrier.send_from_phone(NATIONAL_PHONE, box.number, "hours")
        reply = wait_for(lambda: replies_to(box, NATIONAL_PHONE), what="a reply")[0]
        assert reply.to == NATIONAL_PHONE
        assert "Monday to Friday" in reply.body


def test_uk_phone_gets_links_not_pictures(tmp_path: Path) -> None:
    with serve_sandbox(tmp_path) as box:
        box.carrier.send_from_phone(UK_PHONE, box.number, "help")
        reply = wait_for(
            lambda: [m for m in replies_to(box, UK_PHONE) if m.status == "delivered"],
            what="the UK reply",
        )[0]
        assert reply.media == []
        assert box.url + "/media/logo.png" in reply.body


def test_own_twilio_client_against_emulator_only(tmp_path: Path) -> None:
    from twilio.rest import Client

    with serve_sandbox(tmp_path, emulator_only=True) as box:
        client = Client(box.state.account_sid, box.state.auth_token)
        client.api.base_url = box.url
        message = client.messages.create(to=US_PHONE, from_=box.number, body="hi")
        assert message.status == "queued"
        wait_for(
            lambda: (
                getattr(box.state.get_message(message.sid), "status", "") == "delivered"
            ),
            what="delivered",
        )
        page = requests.get(
            f"{box.url}/sandbox/api/phones/{US_PHONE}/messages", timeout=5
        ).json()
        assert [m["sid"] for m in page["messages"]] == [message.sid]
        client.http_client.session.close()


def test_event_stream_over_http(tmp_path: Path) -> None:
    with (
        serve_sandbox(tmp_path, emulator_only=True) as box,
        requests.get(f"{box.url}/sandbox/api/events", stream=True, timeout=5) as resp,
    ):
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        lines = resp.iter_lines(decode_unicode=True)
        assert next(lines).startswith("retry:")
        box.carrier.send_from_phone(UK_PHONE, box.number, "hello")
        event = next(line for line in lines if line.startswith("event:"))
        assert event == "event: message"
        assert UK_PHONE in next(lines)


# -- the command ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--error-rate-500", "2"], "--error-rate-500"),
        (["--error-rate-429", "-0.1"], "--error-rate-429"),
        (["--stall-rate", "nan"], "--stall-rate"),
        (["--latency", "inf"], "--latency"),
        (["--latency", "soon"], "--latency"),
        (["--port", "70000"], "--port"),
        (["--error-rate-500", "0.6", "--error-rate-429", "0.6"], "add up to more"),
    ],
)
def test_sandbox_command_refuses_bad_values(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["sandbox", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_sandbox_command_refuses_an_unknown_bot() -> None:
    result = CliRunner().invoke(main, ["sandbox", "--port", "0", "--bot", "nope:bot"])
    assert result.exit_code == 2
    assert "bot module 'nope' not found" in result.output


def test_sandbox_command_says_when_the_port_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["sandbox", "--port", str(port)])
    assert result.exit_code == 1
    assert f"port {port}" in result.output
    assert "already in use" in result.output


def test_sandbox_command_serves_until_stopped(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TWILIO_", "TEXTWIRE_"))
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "textwire", "sandbox", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        for line in process.stdout:
            lines.append(line)
            if "client.api.base_url" in line:
                break
        output = "".join(lines)
        url = re.search(r"open (http://127\.0\.0\.1:\d+)", output)
        assert url, output
        assert re.search(r"account SID\s+AC[0-9a-f]{32}", output), output
        assert re.search(r"auth token\s+[0-9a-f]{32}", output), output
        assert "number        +14155550100" in output
        assert f"TEXTWIRE_TWILIO_API_URL={url.group(1)}" in output
        # Printed before waitress takes its first request: wait for it.
        wait_for_server(
            url.group(1) + "/healthz",
            proc=process,
            log=lambda: "".join(lines),
            what="textwire sandbox",
        )
        health = requests.get(url.group(1) + "/healthz", timeout=30)
        assert health.json()["status"] == "ok"
        page = requests.get(url.group(1) + "/", timeout=30)
        assert "textwire sandbox" in page.text
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert (tmp_path / "textwire-sandbox.db").is_file()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

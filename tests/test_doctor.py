"""``textwire doctor``: all green against a healthy setup, then each check
failing once.

A healthy setup is the emulator (Twilio over real HTTP, the unmodified twilio
client) and the bot's app served by a real werkzeug server, the number's
SmsUrl pointing at it and its SQLite database migrated: the self-test is a
real signed HTTP request. The command runs in-process with CliRunner; the
clock is injected.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask, redirect
from rich.console import Console

from textwire import doctor
from textwire.cli import main
from textwire.config import Settings
from textwire.doctor import (
    Check,
    Status,
    all_passed,
    check_clock,
    check_credentials,
    check_database,
    check_number,
    check_public_url,
    check_webhook,
    render,
    resolve_public_url,
    run_checks,
)
from textwire.server import Stack, build_stack
from textwire.tunnel import DevStateFile, NumberWebhooks, SavedNumber

from .live_fixtures import clean_env, live_settings, serve_wsgi
from .sandbox import conftest as sandbox
from .sandbox.conftest import ACCOUNT_SID, AUTH_TOKEN, NUMBER, Emulator

# The emulator's fixtures, served over real HTTP (tests/sandbox/conftest.py).
make_emulator = sandbox.make_emulator
emulator = sandbox.emulator

CREDENTIALS_LINE = "Twilio rejected TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN (20003)"


@dataclass
class Setup:
    """A running bot, and the environment doctor checks it with."""

    url: str
    stack: Stack
    emulator: Emulator
    env: dict[str, str]
    tmp_path: Path

    def doctor(self, **env: str) -> Result:
        # Wide enough that no table cell wraps inside a sentence.
        full = {**self.env, "COLUMNS": "400", **env}
        return CliRunner().invoke(main, ["doctor"], env=full)


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture
def healthy(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Setup]:
    monkeypatch.chdir(tmp_path)  # no stray .env, no dev state file
    holder: dict[str, Any] = {}

    def app(environ: Any, start_response: Any) -> Any:
        return holder["app"](environ, start_response)

    with serve_wsgi(app) as url:
        settings = live_settings(emulator, tmp_path, public_url=url)
        stack = build_stack(settings, None)  # migrates the SQLite file
        holder["app"] = stack.app
        emulator.number.sms_url = url + "/twilio/sms"
        env = clean_env(
            TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            TWILIO_PHONE_NUMBER="(415) 555-0100",
            TEXTWIRE_TWILIO_API_URL=emulator.url,
            TEXTWIRE_TWILIO_TIMEOUT="5",
            TEXTWIRE_DATABASE_URL=settings.database_url,
            TEXTWIRE_PUBLIC_URL=url,
        )
        try:
            yield Setup(url, stack, emulator, env, tmp_path)
        finally:
            stack.close()


def _line(result: Result, name: str) -> str:
    """The table row of one check."""
    start = re.compile(rf"[│|] {re.escape(name)} +[│|]")
    rows = [line for line in result.output.splitlines() if start.match(line)]
    assert rows, result.output
    return rows[0]


# -- all green ---------------------------------------------------------------------


def test_all_green_against_a_healthy_setup(healthy: Setup) -> None:
    result = healthy.doctor()
    assert result.exit_code == 0, result.output
    for name in (
        "Twilio credentials",
        "sender number",
        "number's webhook",
        "public URL reachable",
        "database",
        "clock",
    ):
        assert "✔ ok" in _line(result, name), result.output
    assert "all checks passed" in result.output
    assert f"{healthy.url}/twilio/sms (POST)" in result.output
    assert "a signed request reached bot helpdesk" in result.output


def test_a_number_without_mms_is_a_warning_not_a_failure(healthy: Setup) -> None:
    healthy.emulator.number.mms = False
    result = healthy.doctor()
    assert result.exit_code == 0, result.output
    row = _line(result, "sender number")
    assert "! warn" in row and "not MMS" in row and "21621" in row


# -- each check failing once ----------------------------------------------------------


def test_a_bad_token(healthy: Setup) -> None:
    result = healthy.doctor(TWILIO_AUTH_TOKEN="not-the-token")
    assert result.exit_code == 1
    row = _line(result, "Twilio credentials")
    assert "✘ fail" in row and CREDENTIALS_LINE in row
    assert "copy TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN from" in row
    assert "needs valid Twilio credentials" in _line(result, "sender number")


def test_missing_credentials(healthy: Setup) -> None:
    result = healthy.doctor(TWILIO_ACCOUNT_SID="", TWILIO_AUTH_TOKEN="")
    assert result.exit_code == 1
    row = _line(result, "Twilio credentials")
    assert "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set" in row
    assert "put them in .env" in row
    assert "– skip" in _line(result, "clock")


def test_an_unknown_number(healthy: Setup) -> None:
    result = healthy.doctor(TWILIO_PHONE_NUMBER="+1 415 555 0177")
    assert result.exit_code == 1
    row = _line(result, "sender number")
    assert "✘ fail" in row and f"is not a number of account {ACCOUNT_SID}" in row
    assert "set TWILIO_PHONE_NUMBER to one of the account's numbers" in row
    assert "+14155550177" not in result.output


def test_a_number_without_sms(healthy: Setup) -> None:
    healthy.emulator.number.sms = False
    result = healthy.doctor()
    assert result.exit_code == 1
    assert "has no SMS capability" in _line(result, "sender number")


def test_the_sms_url_points_elsewhere(healthy: Setup) -> None:
    healthy.emulator.number.sms_url = "https://elsewhere.example.com/sms"
    result = healthy.doctor()
    assert result.exit_code == 1
    row = _line(result, "number's webhook")
    assert (
        f"SmsUrl is https://elsewhere.example.com/sms, not {healthy.url}/twilio/sms"
        in row
    )
    assert (
        f"set the number's 'A message comes in' webhook to {healthy.url}/twilio/sms "
        "(HTTP POST), or run `textwire dev`"
    ) in row


def test_the_public_url_points_at_a_closed_port(healthy: Setup) -> None:
    closed = _closed_port_url()
    healthy.emulator.number.sms_url = closed + "/twilio/sms"
    result = healthy.doctor(TEXTWIRE_PUBLIC_URL=closed)
    assert result.exit_code == 1
    row = _line(result, "public URL reachable")
    assert f"not reachable: {closed}/twilio/selftest" in row
    assert "start `textwire run` (or `textwire dev`)" in row
    assert "✔ ok" in _line(result, "number's webhook")


def test_the_public_url_has_another_host_than_the_server_checks(
    healthy: Setup,
) -> None:
    """The server verifies signatures against https://bot.example.com; doctor
    (like Twilio) signs the URL it calls: the signature cannot match."""
    settings = healthy.stack.settings.replace(public_url="https://bot.example.com")
    other = build_stack(settings, None)
    try:
        with serve_wsgi(other.app) as url:
            healthy.emulator.number.sms_url = url + "/twilio/sms"
            result = healthy.doctor(TEXTWIRE_PUBLIC_URL=url)
    finally:
        other.close()
    assert result.exit_code == 1
    row = _line(result, "public URL reachable")
    assert (
        "signature mismatch: TEXTWIRE_PUBLIC_URL does not match the URL Twilio calls"
        in row
    )
    assert "set TEXTWIRE_PUBLIC_URL, for the server too" in row


def test_an_unmigrated_database(healthy: Setup) -> None:
    empty = healthy.tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    result = healthy.doctor(TEXTWIRE_DATABASE_URL=f"sqlite:///{empty}")
    assert result.exit_code == 1
    row = _line(result, "database")
    assert "database at revision none, code expects" in row
    assert "run `textwire db upgrade`" in row


def test_a_database_that_does_not_exist_is_not_created(healthy: Setup) -> None:
    missing = healthy.tmp_path / "missing.db"
    result = healthy.doctor(TEXTWIRE_DATABASE_URL=f"sqlite:///{missing}")
    assert result.exit_code == 1
    assert "does not exist yet" in _line(result, "database")
    assert not missing.exists()


def test_a_skewed_clock(healthy: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        doctor, "_utcnow", lambda: datetime.now(UTC) + timedelta(minutes=5)
    )
    result = healthy.doctor()
    assert result.exit_code == 1
    row = _line(result, "clock")
    assert "this machine's clock is 5 min ahead of Twilio's" in row
    assert "signatures and DateSent filters depend on it" in row


# -- the checks one by one ----------------------------------------------------------


@pytest.fixture
def client(emulator: Emulator) -> Any:
    return emulator.client()


def test_check_clock_behind_and_in_sync(client: Any) -> None:
    behind = check_clock(client, now=lambda: datetime.now(UTC) - timedelta(hours=2))
    assert behind.status is Status.FAIL
    assert behind.result == "this machine's clock is 2.0 h behind Twilio's"
    fine = check_clock(client, now=lambda: datetime.now(UTC) + timedelta(seconds=30))
    assert fine.status is Status.OK


def test_check_credentials_unreachable(emulator: Emulator) -> None:
    client = emulator.client()
    client.api.base_url = _closed_port_url()
    result = check_credentials(client)
    assert result.status is Status.FAIL
    assert result.result.startswith("could not reach Twilio's API at")
    assert check_clock(client).status is Status.SKIP


def test_check_number_not_set(client: Any) -> None:
    result = check_number(client, None)
    assert (result.status, result.result) == (
        Status.FAIL,
        "TWILIO_PHONE_NUMBER is not set",
    )


def test_check_webhook_with_get_and_without_a_public_url(
    emulator: Emulator, client: Any
) -> None:
    emulator.number.sms_url = "https://bot.example.com/twilio/sms"
    emulator.number.sms_method = "GET"
    got = check_webhook(client, NUMBER, "https://bot.example.com")
    assert (got.status, got.result) == (Status.FAIL, "SmsUrl is called with GET")
    unset = check_webhook(client, NUMBER, None)
    assert unset.status is Status.FAIL and "TEXTWIRE_PUBLIC_URL is not set" in (
        unset.result
    )


def test_check_public_url_against_servers_that_are_not_textwire() -> None:
    other = Flask("not-textwire")

    @other.post("/moved/twilio/selftest")
    def moved() -> Any:
        return redirect("https://elsewhere.example.com/twilio/selftest", 308)

    @other.post("/html/twilio/selftest")
    def html() -> str:
        return "<html>hello</html>"

    with serve_wsgi(other) as url:
        missing = check_public_url(url, AUTH_TOKEN)
        moving = check_public_url(url + "/moved", AUTH_TOKEN)
        page = check_public_url(url + "/html", AUTH_TOKEN)
    assert missing.status is Status.FAIL and "answered 404" in missing.result
    assert moving.status is Status.FAIL
    assert moving.result.endswith(
        "redirects to https://elsewhere.example.com/twilio/selftest"
    )
    assert page.status is Status.FAIL
    assert "answered HTTP 200, not as textwire's self-test" in page.result
    assert check_public_url(None, AUTH_TOKEN).status is Status.SKIP
    assert check_public_url(url, None).status is Status.SKIP


def test_check_public_url_warns_when_the_server_checks_no_signatures(
    emulator: Emulator, tmp_path: Path
) -> None:
    settings = live_settings(emulator, tmp_path, validate_signatures=False)
    stack = build_stack(settings, None)
    try:
        with serve_wsgi(stack.app) as url:
            result = check_public_url(url, AUTH_TOKEN)
    finally:
        stack.close()
    assert result.status is Status.WARN
    assert "does not check signatures" in result.result


def test_check_database_with_a_url_that_is_not_one() -> None:
    result = check_database("not a url")
    assert result.status is Status.FAIL and "not a database URL" in result.result


def test_run_checks_with_an_injected_clock_and_render(
    healthy: Setup,
) -> None:
    settings = healthy.stack.settings
    now = datetime.now(UTC)
    checks = run_checks(settings, now=lambda: now - timedelta(minutes=3))
    assert [c.status for c in checks][:-1] == [Status.OK] * 5
    assert checks[-1].status is Status.FAIL and not all_passed(checks)
    console = Console(record=True, width=300)
    render(checks, console)
    text = console.export_text()
    assert "1 of 6 checks did not pass" in text
    assert "3 min behind Twilio's" in text


def test_the_public_url_of_a_running_dev_is_used(tmp_path: Path) -> None:
    state = DevStateFile(tmp_path / "dev-state.json")
    saved = SavedNumber(
        account_sid=ACCOUNT_SID,
        number_sid="PN" + "0" * 32,
        phone_number=NUMBER,
        previous=NumberWebhooks(),
        webhook_url="https://abc123.ngrok.app/twilio/sms",
        pid=os.getpid(),
    )
    state.save(saved)
    settings = Settings()
    assert resolve_public_url(settings, state.path) == (
        "https://abc123.ngrok.app",
        "the running textwire dev",
    )
    configured = settings.replace(public_url="https://bot.example.com")
    assert resolve_public_url(configured, state.path) == (
        "https://bot.example.com",
        "TEXTWIRE_PUBLIC_URL",
    )
    state.clear()
    assert resolve_public_url(settings, state.path) == (None, "")


def test_a_check_passes_when_ok_or_warned() -> None:
    assert Check("x", Status.OK, "").passed and Check("x", Status.WARN, "").passed
    assert not Check("x", Status.FAIL, "").passed
    assert not Check("x", Status.SKIP, "").passed

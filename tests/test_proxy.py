"""Behind a proxy or tunnel without TEXTWIRE_PUBLIC_URL: the URL Twilio signed
comes from X-Forwarded-Proto / X-Forwarded-Host.

Found in issue 12: an odd X-Forwarded-Host raised ValueError inside the
signature check (an unauthenticated 500), and ``textwire run`` never saw the
forwarded headers at all, because waitress drops them unless it trusts the
proxy, so every webhook behind a TLS proxy got 403.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask

from textwire.bot import Bot
from textwire.config import Settings
from textwire.errors import ConfigError
from textwire.server import WaitressServer
from textwire.storage.sql import SqlStore
from textwire.web import create_app

from .conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    BOT_NUMBER,
    handle_inbox,
    make_form,
    sign,
)
from .waiting import wait_for_server

PUBLIC = "https://sms.example.com"
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "sms.example.com"}


@pytest.fixture
def proxied_app(settings: Settings, bot: Bot, store: SqlStore) -> Flask:
    # No TEXTWIRE_PUBLIC_URL: the URL is derived from the request.
    return create_app(settings.replace(public_url=None), bot=bot, store=store)


# -- odd forwarded headers -------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Host": "x:99999"},
        {"X-Forwarded-Host": "["},
        {"X-Forwarded-Host": "x:abc"},
        {"X-Forwarded-Host": "[::1"},
        {"X-Forwarded-Host": "x/y"},
        {"X-Forwarded-Host": "user@x"},
        {"X-Forwarded-Host": "x y"},
        {"X-Forwarded-Proto": "javascript"},
        {"Host": "x:99999"},
    ],
)
def test_an_odd_forwarded_host_is_403_with_the_diagnostic(
    proxied_app: Flask,
    store: SqlStore,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
) -> None:
    form = make_form("help")
    signature = sign(PUBLIC + "/twilio/sms", form)
    with caplog.at_level(logging.WARNING, "textwire.web"):
        response = proxied_app.test_client().post(
            "/twilio/sms",
            data=form,
            headers={"X-Twilio-Signature": signature, **headers},
        )
    assert response.status_code == 403, response.get_data(as_text=True)
    assert "X-Twilio-Signature" in response.get_data(as_text=True)
    # The log says which header and what to do
    assert "TEXTWIRE_PUBLIC_URL" in caplog.text
    assert "not a host" in caplog.text or "not http or https" in caplog.text
    assert store.messages.all() == []


def test_odd_forwarded_headers_without_signature_checks_are_400(
    settings: Settings, bot: Bot, store: SqlStore
) -> None:
    unchecked = settings.replace(
        public_url=None, validate_signatures=False, twilio_auth_token=None
    )
    app = create_app(unchecked, bot=bot, store=store)
    response = app.test_client().post(
        "/twilio/sms", data=make_form("help"), headers={"X-Forwarded-Host": "x:abc"}
    )
    assert response.status_code == 400
    assert "X-Forwarded-Host" in response.get_data(as_text=True)


def test_the_selftest_refuses_an_odd_forwarded_host_too(proxied_app: Flask) -> None:
    form = {"Nonce": "n1"}
    response = proxied_app.test_client().post(
        "/twilio/selftest",
        data=form,
        headers={
            "X-Twilio-Signature": sign(PUBLIC + "/twilio/selftest", form),
            "X-Forwarded-Host": "[",
        },
    )
    assert response.status_code == 403


# -- waitress and the trusted proxy ------------------------------------------------


def test_trusted_proxy_setting() -> None:
    assert Settings().trusted_proxy == "127.0.0.1"
    env = {"TEXTWIRE_TRUSTED_PROXY": "::1"}
    assert Settings.from_env(env, env_file=None).trusted_proxy == "::1"
    env = {"TEXTWIRE_TRUSTED_PROXY": "none"}
    assert Settings.from_env(env, env_file=None).trusted_proxy is None
    assert Settings(trusted_proxy="*").trusted_proxy == "*"
    with pytest.raises(ConfigError, match="TEXTWIRE_TRUSTED_PROXY"):
        Settings(trusted_proxy="proxy.internal")


@pytest.fixture
def served(proxied_app: Flask) -> Iterator[str]:
    """The app under WaitressServer with the default trusted proxy (loopback)."""
    sock = socket.create_server(("127.0.0.1", 0))
    server = WaitressServer(proxied_app, sock, threads=2, trusted_proxy="127.0.0.1")
    server.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.stop()


def _post(base: str, form: dict[str, str], headers: dict[str, str]) -> int:
    signature = sign(PUBLIC + "/twilio/sms", form)
    with requests.post(
        base + "/twilio/sms",
        data=form,
        headers={"X-Twilio-Signature": signature, **headers},
        timeout=30,
    ) as response:
        return response.status_code


def test_waitress_honours_the_trusted_proxys_forwarded_headers(
    served: str, store: SqlStore, bot: Bot, settings: Settings
) -> None:
    # Given a TLS proxy on this machine forwarding https://sms.example.com
    assert _post(served, make_form("help"), FORWARDED) == 200
    # The reply's media point at the public URL too (the webhook keeps the
    # URL it saw for the worker)
    assert handle_inbox(store, bot, settings.replace(public_url=None)) == 1
    (row,) = store.messages.all("outbound")
    assert row["media"][0] == PUBLIC + "/media/logo.png"
    # And without the headers, the signature for the public URL cannot match
    assert _post(served, make_form("help"), {}) == 403


def test_waitress_drops_forwarded_headers_from_anyone_else(
    proxied_app: Flask,
) -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    server = WaitressServer(proxied_app, sock, threads=2, trusted_proxy="192.0.2.1")
    server.start()
    try:
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        assert _post(base, make_form("help"), FORWARDED) == 403
    finally:
        server.stop()


def _run(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    full_env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TWILIO_", "TEXTWIRE_"))
        },
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": BOT_NUMBER,
        "TEXTWIRE_DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
        **env,
    }
    log = tmp_path / f"run-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "textwire", "run", "--no-worker"]
            + ["--port", str(port)],
            env=full_env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(base + "/healthz", proc=proc, log=log, what="textwire run")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, base, log


def test_textwire_run_behind_a_tls_proxy_checks_the_forwarded_url(
    tmp_path: Path,
) -> None:
    # Given `textwire run` with no TEXTWIRE_PUBLIC_URL and the default trusted
    # proxy (loopback), and a request forwarded by a proxy on this machine
    proc, base, log = _run(tmp_path)
    try:
        # Then the signature over https://sms.example.com/... holds
        assert _post(base, make_form("help"), FORWARDED) == 200, log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # And with no proxy trusted, the same request is refused
    proc, base, log = _run(tmp_path, TEXTWIRE_TRUSTED_PROXY="none")
    try:
        assert _post(base, make_form("help"), FORWARDED) == 403, log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)

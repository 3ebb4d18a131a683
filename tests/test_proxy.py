"""Behind a proxy or tunnel without TEXTWIRE_PUBLIC_URL: the URL Twilio signed
comes from X-Forwarded-Proto / X-Forwarded-Host.

Found in issue 12: an odd X-Forwarded-Host raised ValueError inside the
signature check (an unauthenticated 500), and ``textwire run`` never saw the
forwarded headers at all, because waitress drops them unless it trusts the
proxy, so every webhook behind a TLS proxy got 403.
"""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from textwire.bot import Bot
from textwire.config import Settings
from textwire.storage.sql import SqlStore
from textwire.web import create_app

from .conftest import make_form, sign

PUBLIC = "https://sms.example.com"


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
    assert store.messages() == []


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

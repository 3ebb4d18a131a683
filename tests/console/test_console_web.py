"""The console over HTTP (Flask's test client): who gets in, what every page
refuses, what it shows and how, and what each operator action does."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

import pytest
from flask import Flask

from textwire import Bot
from textwire.config import Settings
from textwire.errors import ConfigError
from textwire.storage.sql import SqlStore
from textwire.testing import make_inbound
from textwire.web import create_app

from ..conftest import AUTH_TOKEN, BOT_NUMBER, PUBLIC_URL, base_settings
from .conftest import PASSWORD, Operator, csrf_of

ANA = "+14155550199"
CHLOE = "+447400123456"
XSS = "<img src=x onerror=alert(1)>"


def record(store: SqlStore, body: str, *, from_: str = ANA, **params: str) -> int:
    message = make_inbound(body, from_=from_, to=BOT_NUMBER, **params)
    assert store.inbox.record(message, datetime.now(UTC)) is not None
    return int(store.messages.all("inbound")[-1]["id"])


def contact_id(store: SqlStore, phone: str = ANA) -> int:
    return store.console.contact_by_phone(phone, datetime.now(UTC)).id


# -- on, off, and refusing to start ---------------------------------------------


def test_the_console_is_off_without_a_password(
    settings: Settings, bot: Bot, store: SqlStore
) -> None:
    client = create_app(settings, bot=bot, store=store).test_client()
    assert client.get("/console/").status_code == 404


def test_enabled_without_a_password_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match="TEXTWIRE_CONSOLE is on but no password"):
        Settings.from_env({"TEXTWIRE_CONSOLE": "true"}, env_file=None)
    on = Settings.from_env({"TEXTWIRE_CONSOLE_PASSWORD": "pw"}, env_file=None)
    assert on.console_enabled
    off = Settings.from_env(
        {"TEXTWIRE_CONSOLE_PASSWORD": "pw", "TEXTWIRE_CONSOLE": "false"}, env_file=None
    )
    assert not off.console_enabled
    with pytest.raises(ConfigError, match="hash-password"):
        Settings(console_password_hash="plain-text-password")


def test_a_password_hash_works_and_the_password_is_never_kept_plain(
    database_url: str, bot: Bot, store: SqlStore
) -> None:
    from werkzeug.security import generate_password_hash

    hashed = base_settings(database_url).replace(
        console_password_hash=generate_password_hash("s3cret")
    )
    operator = Operator(create_app(hashed, bot=bot, store=store).test_client())
    assert operator.login(password="wrong").status_code == 401
    assert operator.login(password="s3cret").status_code == 303


# -- logging in ------------------------------------------------------------------


def test_pages_need_a_login(console_app: Flask) -> None:
    client = console_app.test_client()
    response = client.get("/console/outbox")
    assert response.status_code == 302
    assert response.headers["Location"].startswith(
        "/console/login?next=/console/outbox"
    )
    assert client.get("/console/events").status_code == 401
    assert client.get("/console/media/1/0").status_code == 401
    login = client.get("/console/login")
    assert login.status_code == 200
    assert ANA not in login.text and AUTH_TOKEN not in login.text


def test_wrong_password_refused_and_locked_out_after_five(
    console_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    operator = Operator(console_app.test_client())
    caplog.set_level(logging.INFO, "textwire.audit")
    for _ in range(5):
        refused = operator.login(password="guess")
        assert refused.status_code == 401
        assert "Wrong password" in refused.text
    locked = operator.login()  # even the right password now
    assert locked.status_code == 429
    assert "Too many tries" in locked.text
    assert operator.client.get("/console/").status_code == 302  # not logged in
    assert sum("login failed" in r.message for r in caplog.records) == 5
    assert PASSWORD not in caplog.text and "guess" not in caplog.text


def test_the_session_cookie_is_httponly_lax_and_secure_on_https(
    console_app: Flask, database_url: str, bot: Bot, store: SqlStore
) -> None:
    cookie = console_app.test_client().get("/console/login").headers["Set-Cookie"]
    assert PUBLIC_URL.startswith("https://")
    for flag in ("HttpOnly", "SameSite=Lax", "Secure", "Path=/console"):
        assert flag in cookie
    plain = base_settings(database_url).replace(
        console_password="pw", public_url="http://127.0.0.1:8000"
    )
    client = create_app(plain, bot=bot, store=store).test_client()
    assert "Secure" not in client.get("/console/login").headers["Set-Cookie"]


def test_a_forged_or_old_cookie_is_not_a_login(console_app: Flask) -> None:
    client = console_app.test_client()
    client.set_cookie(
        "textwire_console", "eyJjIjoieCIsIm4iOiJldmUifQ.forged", path="/console"
    )
    assert client.get("/console/").status_code == 302


def test_logging_in_gives_a_new_csrf_token(console_app: Flask) -> None:
    operator = Operator(console_app.test_client())
    before = csrf_of(operator.client.get("/console/login").text)
    operator.login()
    assert operator.csrf and operator.csrf != before


@pytest.mark.parametrize(
    "path",
    [
        "/console/c/{cid}/reply",
        "/console/c/{cid}/handoff",
        "/console/c/{cid}/release",
        "/console/outbox/1/retry",
        "/console/outbox/1/cancel",
        "/console/logout",
        "/console/login",
    ],
)
def test_a_post_without_the_csrf_token_is_403(
    console: Operator, store: SqlStore, path: str
) -> None:
    record(store, "hi")
    target = path.format(cid=contact_id(store))
    bare = console.client.post(target, data={"body": "hello", "password": PASSWORD})
    assert bare.status_code == 403
    wrong = console.client.post(
        target, data={"body": "hello"}, headers={"X-CSRF-Token": "not-it"}
    )
    assert wrong.status_code == 403
    assert store.messages.all("outbound") == []


# -- what the pages show -----------------------------------------------------------


def test_bodies_and_contact_fields_are_escaped_everywhere(
    console: Operator, store: SqlStore
) -> None:
    record(store, XSS)
    cid = contact_id(store)
    pages = [
        console.client.get("/console/").text,
        console.client.get("/console/?fragment=1").text,
        console.client.get(f"/console/c/{cid}").text,
        console.client.get(f"/console/c/{cid}?fragment=1").text,
        console.client.get("/console/?q=onerror").text,
        console.client.get("/console/?q=" + XSS).text,
    ]
    for html in pages:
        assert XSS not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in pages[2]
    assert "Content-Security-Policy" in console.client.get("/console/").headers


def test_no_page_shows_the_auth_token(console: Operator, store: SqlStore) -> None:
    record(store, "hello")
    cid = contact_id(store)
    for path in ("/console/", f"/console/c/{cid}", "/console/outbox", "/console/login"):
        response = console.client.get(path)
        assert response.status_code == 200, path
        assert AUTH_TOKEN not in response.text


def test_numbers_are_shown_in_full_to_a_logged_in_operator(
    console: Operator, store: SqlStore
) -> None:
    record(store, "hello")
    html = console.client.get(f"/console/c/{contact_id(store)}").text
    assert ANA in html and "+1 415-555-0199" in html


def test_search_by_number_in_any_format_by_digits_or_by_text(
    console: Operator, store: SqlStore
) -> None:
    record(store, "my printer is broken")
    record(store, "hello", from_="+14155550142")
    for query in ("(415) 555-0199", "+1 415 555 0199", "4155550199", "415.555.0199"):
        html = console.client.get("/console/", query_string={"q": query}).text
        assert html.count('data-testid="conversation"') == 1, query
        assert "+1 415-555-0199" in html
    by_digits = console.client.get("/console/", query_string={"q": "0142"}).text
    assert "+1 415-555-0142" in by_digits and "+1 415-555-0199" not in by_digits
    by_text = console.client.get("/console/", query_string={"q": "PRINTER"}).text
    assert "+1 415-555-0199" in by_text and "+1 415-555-0142" not in by_text
    nothing = console.client.get("/console/", query_string={"q": "50%_off"}).text
    assert 'data-testid="no-conversations"' in nothing


def test_unread_counts_until_the_conversation_is_opened(
    console: Operator, store: SqlStore
) -> None:
    record(store, "one")
    record(store, "two")
    assert re.search(r'data-testid="unread">2<', console.client.get("/console/").text)
    console.client.get(f"/console/c/{contact_id(store)}")
    assert 'data-testid="unread"' not in console.client.get("/console/").text
    record(store, "three")
    assert re.search(r'data-testid="unread">1<', console.client.get("/console/").text)


# -- replying as a person ------------------------------------------------------------


def test_a_reply_is_one_outbox_message_marked_as_the_operators(
    console: Operator, store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    record(store, "is anyone there?")
    cid = contact_id(store)
    caplog.set_level(logging.INFO, "textwire.audit")
    response = console.post_json(
        f"/console/c/{cid}/reply",
        {"body": "Yes, Sam here.", "media": f"{PUBLIC_URL}/media/logo.png\n"},
    )
    assert response.status_code == 200 and response.json["ok"]
    (message,) = store.messages.all("outbound")
    assert message["body"] == "Yes, Sam here."
    assert message["media"] == [f"{PUBLIC_URL}/media/logo.png"]
    assert message["to_number"] == ANA and message["from_number"] == BOT_NUMBER
    assert message["sent_by"] == "Sam"
    (line,) = [r.message for r in caplog.records if "replied" in r.message]
    assert "operator='Sam'" in line and ANA not in line  # the number is masked
    html = console.client.get(f"/console/c/{cid}").text
    assert "by Sam" in html and 'data-status="queued"' in html
    assert "1 segment · GSM-7" in html


def test_a_reply_to_an_opted_out_contact_is_refused(
    console: Operator, store: SqlStore
) -> None:
    record(store, "STOP")
    with store.begin() as conn:
        store.contacts.set_opt_out(conn, ANA, True, datetime.now(UTC))
    response = console.post_json(
        f"/console/c/{contact_id(store)}/reply", {"body": "hi"}
    )
    assert response.status_code == 400
    assert "opted out" in response.json["message"]
    assert store.messages.all("outbound") == []


def test_a_reply_follows_the_mms_policy_and_the_limits(
    console: Operator, store: SqlStore
) -> None:
    record(store, "hello from London", from_=CHLOE)
    cid = contact_id(store, CHLOE)
    picture = f"{PUBLIC_URL}/media/logo.png"
    assert console.post_json(
        f"/console/c/{cid}/reply", {"body": "See this", "media": picture}
    ).json["ok"]
    (message,) = store.messages.all("outbound")
    assert message["media"] == [] and picture in message["body"]  # no MMS in the UK
    too_long = console.post_json(f"/console/c/{cid}/reply", {"body": "x" * 1601})
    assert too_long.status_code == 400 and "1600" in too_long.json["message"]
    private = console.post_json(
        f"/console/c/{cid}/reply", {"body": "hi", "media": "http://10.0.0.5/a.png"}
    )
    assert private.status_code == 400 and "private" in private.json["message"]
    empty = console.post_json(f"/console/c/{cid}/reply", {"body": "  "})
    assert empty.status_code == 400
    assert len(store.messages.all("outbound")) == 1


def test_without_javascript_a_reply_redirects_back_with_a_notice(
    console: Operator, store: SqlStore
) -> None:
    record(store, "hi")
    cid = contact_id(store)
    response = console.post(f"/console/c/{cid}/reply", {"body": "Hello!"})
    assert response.status_code == 303
    page = console.client.get(response.headers["Location"])
    assert "Queued (1 message)" in page.text


# -- handoff ---------------------------------------------------------------------


def test_hand_to_a_person_and_back_to_the_bot(
    console: Operator, store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    record(store, "hi")
    cid = contact_id(store)
    caplog.set_level(logging.INFO, "textwire.audit")
    console.post(f"/console/c/{cid}/handoff", {"note": "billing question"})
    contact = store.console.contact(cid)
    assert contact is not None and contact.handoff is not None
    assert contact.handoff.by == "Sam" and contact.handoff.note == "billing question"
    html = console.client.get(f"/console/c/{cid}").text
    assert "with a person" in html and "Back to the bot" in html
    console.post(f"/console/c/{cid}/release")
    contact = store.console.contact(cid)
    assert contact is not None and contact.handoff is None
    assert sum("operator='Sam'" in r.message for r in caplog.records) == 2


def test_mounted_on_an_app_of_ones_own(
    settings: Settings, bot: Bot, store: SqlStore
) -> None:
    from flask import Flask as App

    from textwire.web import Textwire

    # The app's own /console stays its own while textwire's console is off.
    mine = App("shop")
    mine.add_url_rule("/console/", "shop_console", lambda: "the shop's console")
    Textwire(bot).init_app(mine, settings=settings, store=store)
    assert mine.test_client().get("/console/").text == "the shop's console"
    # Asked for without a password: a clear refusal.
    with pytest.raises(ConfigError, match="console=True needs a password"):
        Textwire(bot).init_app(
            App("other"), settings=settings, store=store, console=True
        )
    # With one, it is mounted; and it refuses to shadow the app's own route.
    on = settings.replace(console_password="pw")
    other = App("other")
    Textwire(bot).init_app(other, settings=on, store=store)
    assert other.test_client().get("/console/").status_code == 302
    clash = App("clash")
    clash.add_url_rule("/console/", "x", lambda: "x")
    with pytest.raises(ConfigError, match="/console"):
        Textwire(bot).init_app(clash, settings=on, store=store)

"""textwire mounted on an existing Flask app (``Textwire(...).init_app(app)``).

The example in ``examples/embed_flask.py`` runs here in-process: the shop's own
routes and error pages keep working, the bot answers under ``/twilio``. Each
test that touches the database runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flask import Blueprint, Flask
from flask.testing import FlaskClient
from werkzeug.exceptions import HTTPException

from textwire import Bot
from textwire.config import Settings
from textwire.errors import ConfigError
from textwire.storage.sql import SqlStore
from textwire.web import Mount, Textwire
from textwire.web.twiml import EMPTY_TWIML
from textwire.worker import SendWorker

from .conftest import PUBLIC_URL, TwilioAPI, handle_inbox, make_form, sign

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "embed_flask.py"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    """``examples/embed_flask.py``, imported as a user would run it."""
    spec = importlib.util.spec_from_file_location("embed_flask", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def signed_post(
    client: FlaskClient, path: str, form: dict[str, str], *, url: str | None = None
) -> Any:
    """POST ``form`` to ``path``, signed for ``url`` (default: public URL + path)."""
    signature = sign(url or PUBLIC_URL + path, form)
    return client.post(path, data=form, headers={"X-Twilio-Signature": signature})


def test_the_example_shop_keeps_its_routes_and_answers_texts(
    example: ModuleType,
    settings: Settings,
    store: SqlStore,
    worker: SendWorker,
    twilio_api: TwilioAPI,
) -> None:
    # Given the example shop with textwire mounted
    app = example.create_app(settings, store=store)
    client = app.test_client()
    # Then the shop's own page and its own 404 page still work
    home = client.get("/")
    assert home.status_code == 200 and "Example Shop" in home.get_data(as_text=True)
    missing = client.get("/no-such-page")
    assert missing.status_code == 404
    assert "No such page" in missing.get_data(as_text=True)
    # When a signed "help" reaches the mounted webhook
    response = signed_post(client, "/twilio/sms", make_form("help"))
    # Then it is acknowledged with empty TwiML and recorded for the worker
    assert response.status_code == 200
    assert response.get_data(as_text=True) == EMPTY_TWIML
    assert [row["status"] for row in store.inbox.rows()] == ["pending"]
    assert store.outbox.depth() == 0
    # and a forged one is refused, in textwire's plain text, storing nothing
    form = make_form("help")
    forged = client.post(
        "/twilio/sms",
        data=form,
        headers={"X-Twilio-Signature": sign(PUBLIC_URL + "/twilio/sms", form, "x")},
    )
    assert forged.status_code == 403
    assert forged.content_type.startswith("text/plain")
    assert forged.get_data(as_text=True).startswith("403 Forbidden")
    assert len(store.messages.all("inbound")) == 1
    # The bot's pictures and health are served too
    with client.get("/media/logo.png") as picture:
        assert picture.status_code == 200
    assert client.get("/healthz").get_json()["database"] == "ok"
    assert isinstance(app.extensions["textwire"], Mount)
    # When `textwire worker` runs, the one reply goes out as one message
    while worker.run_once():
        pass
    (row,) = store.messages.all("outbound")
    assert row["media"] == [
        f"{PUBLIC_URL}/media/logo.png",
        f"{PUBLIC_URL}/media/helpdesk.png",
    ]
    (create,) = twilio_api.creates
    assert create["form"]["StatusCallback"] == [f"{PUBLIC_URL}/twilio/status?outbox=1"]


def shop(**routes: Any) -> Flask:
    """A user's app with its own catch-all error handler and limits."""
    app = Flask("shop")

    @app.get("/")
    def home() -> str:
        return "shop"

    @app.post("/upload")
    def upload() -> str:
        return "stored"

    @app.errorhandler(HTTPException)
    def html_error(exc: HTTPException) -> tuple[str, int]:
        return f"<h1>shop error {exc.code}</h1>", exc.code or 500

    return app


def test_error_handlers_and_limits_stay_with_their_routes(
    settings: Settings, bot: Bot, store: SqlStore
) -> None:
    app = shop()
    Textwire(bot, settings=settings, store=store).init_app(app)
    client = app.test_client()
    # The user's handler still renders the user's errors
    assert client.get("/nope").get_data(as_text=True) == "<h1>shop error 404</h1>"
    # textwire's routes answer Twilio in plain text
    unsigned = client.post("/twilio/sms", data=make_form("help"))
    assert unsigned.status_code == 403
    assert unsigned.get_data(as_text=True).startswith("403 Forbidden:")
    # textwire's 64 kB webhook limit applies to its routes only
    assert app.config["MAX_CONTENT_LENGTH"] is None
    big = make_form("x" * 70_000)
    too_big = signed_post(client, "/twilio/sms", big)
    assert too_big.status_code == 413
    assert too_big.get_data(as_text=True).startswith("413 Request Entity Too Large")
    assert client.post("/upload", data={"file": "x" * 70_000}).status_code == 200
    assert store.messages.all() == []


def test_mounted_under_other_prefixes_everything_follows(
    settings: Settings, bot: Bot, store: SqlStore
) -> None:
    # Given textwire under /hooks/twilio and its extras under /textwire, in the
    # twiml mode (so the reply's status URL is visible in the answer)
    app = shop()
    Textwire(bot, settings=settings.replace(reply_mode="twiml"), store=store).init_app(
        app, url_prefix="/hooks/twilio/", extras_prefix="textwire"
    )
    client = app.test_client()
    # Then Twilio's signature is checked against the full public path
    form = make_form("help")
    wrong = signed_post(
        client, "/hooks/twilio/sms", form, url=PUBLIC_URL + "/twilio/sms"
    )
    assert wrong.status_code == 403
    response = signed_post(client, "/hooks/twilio/sms", form)
    assert response.status_code == 200
    (message,) = ET.fromstring(response.get_data())
    # and the media and status URLs point where textwire is mounted
    assert [m.text for m in message if m.tag == "Media"] == [
        f"{PUBLIC_URL}/textwire/media/logo.png",
        f"{PUBLIC_URL}/textwire/media/helpdesk.png",
    ]
    action = message.get("action") or ""
    assert action == f"{PUBLIC_URL}/hooks/twilio/status?outbox=1"
    sid = "SM" + "7c" * 16
    status = {"MessageSid": sid, "MessageStatus": "sent", "AccountSid": "AC1"}
    callback = signed_post(client, action.removeprefix(PUBLIC_URL), status)
    assert callback.status_code == 204
    assert store.messages.all("outbound")[0]["sid"] == sid
    with client.get("/textwire/media/logo.png") as picture:
        assert picture.status_code == 200
    assert client.get("/textwire/healthz").status_code == 200
    assert client.get("/healthz").get_data(as_text=True) == "<h1>shop error 404</h1>"
    assert client.post("/twilio/sms", data=form).status_code == 404


def test_init_app_never_shadows_the_apps_routes(
    settings: Settings, bot: Bot, store: SqlStore
) -> None:
    app = shop()

    @app.get("/healthz")
    def own_health() -> str:
        return "mine"

    @app.get("/media/<path:name>")
    def own_media(name: str) -> str:
        return name

    textwire = Textwire(bot, settings=settings, store=store)
    with pytest.raises(ConfigError, match="/healthz"):
        textwire.init_app(app)
    with pytest.raises(ConfigError, match="/media/<path:name>"):
        textwire.init_app(app, health=False)
    assert "textwire" not in app.extensions
    # Without them (or under another prefix) it fits beside the app's own
    textwire.init_app(app, health=False, media=False)
    client = app.test_client()
    assert client.get("/healthz").get_data(as_text=True) == "mine"
    assert client.get("/media/a.png").get_data(as_text=True) == "a.png"
    assert signed_post(client, "/twilio/sms", make_form("hi")).status_code == 200
    with pytest.raises(RuntimeError, match="already initialised"):
        textwire.init_app(app)


def test_one_textwire_many_apps_and_the_app_argument(
    settings: Settings, bot: Bot, store: SqlStore
) -> None:
    # A blueprint of the user's own named like ours is no clash
    own = Blueprint("webhooks", __name__)

    @own.get("/own")
    def own_view() -> str:
        return "own"

    first = shop()
    first.register_blueprint(own)
    textwire = Textwire(bot, first, settings=settings, store=store)
    second = shop()
    textwire.init_app(second, url_prefix="/sms-bot")
    assert first.extensions["textwire"] is not second.extensions["textwire"]
    assert first.test_client().get("/own").get_data(as_text=True) == "own"
    ok = signed_post(first.test_client(), "/twilio/sms", make_form("hours"))
    assert ok.status_code == 200
    ok = signed_post(second.test_client(), "/sms-bot/sms", make_form("hours"))
    assert ok.status_code == 200
    assert handle_inbox(store, bot, settings) == 2
    assert len(store.messages.all("outbound")) == 2


def test_init_app_checks_settings_before_touching_the_app(
    settings: Settings, bot: Bot, store: SqlStore
) -> None:
    app = shop()
    no_token = settings.replace(twilio_auth_token=None)
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN"):
        Textwire(bot, settings=no_token, store=store).init_app(app)
    no_account = settings.replace(twilio_account_sid=None)
    with pytest.raises(ConfigError, match="start_worker"):
        Textwire(bot, settings=no_account, store=store).init_app(app, start_worker=True)
    with pytest.raises(ConfigError, match="url_prefix"):
        Textwire(bot, settings=settings, store=store).init_app(app, url_prefix="/")
    assert "textwire" not in app.extensions
    assert [r.rule for r in app.url_map.iter_rules() if "twilio" in r.rule] == []


def test_start_worker_sends_with_the_mounted_status_url(
    settings: Settings, bot: Bot, store: SqlStore, twilio_api: TwilioAPI
) -> None:
    # Given textwire under /hooks with its own worker, aimed at the local Twilio
    app = shop()
    live = settings.replace(twilio_api_url=twilio_api.url)
    mount = Textwire(bot, settings=live, store=store).init_app(
        app, url_prefix="/hooks", start_worker=True
    )
    worker = mount.runtime.worker
    assert worker is not None and worker.sender is not None
    # (stepped by hand from here on, so the test decides when it sends)
    worker.stop()
    try:
        signed_post(app.test_client(), "/hooks/sms", make_form("help"))
        assert worker.inbox.run_once() == 1
        assert worker.sender.run_once() == 1
    finally:
        mount.runtime.stop()
    (create,) = twilio_api.creates
    assert create["form"]["StatusCallback"] == [f"{PUBLIC_URL}/hooks/status?outbox=1"]


def test_create_app_still_answers_every_error_in_plain_text(
    client: FlaskClient, app: Flask
) -> None:
    for response in (client.get("/nope"), client.get("/twilio/sms")):
        assert response.status_code in (404, 405)
        assert response.content_type == "text/plain; charset=utf-8"
        assert response.get_data(as_text=True).startswith(f"{response.status_code} ")
    assert app.config["MAX_CONTENT_LENGTH"] == 64 * 1024
    assert sorted(app.blueprints) == [
        "textwire_health",
        "textwire_media",
        "textwire_metrics",
        "textwire_selftest",
        "textwire_webhooks",
    ]

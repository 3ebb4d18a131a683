"""An existing Flask app (a shop's website) with a textwire bot mounted on it.

The shop keeps its own routes and its own error pages; textwire adds

    POST /twilio/sms      Twilio's "A message comes in" webhook
    POST /twilio/status   delivery status callbacks
    GET  /healthz         liveness + database check
    GET  /media/<path>    the bot's pictures, for Twilio to fetch

Run it with the same settings as ``textwire run`` (TWILIO_AUTH_TOKEN,
TEXTWIRE_PUBLIC_URL …, from the environment or a ``.env`` file)::

    flask --app examples/embed_flask.py run --port 8000
    textwire worker        # in a second terminal: sends the replies

(or ``TEXTWIRE_REPLY_MODE=twiml`` and no worker at all). In production:
``gunicorn 'embed_flask:create_app()'`` from this folder, beside
``textwire worker``.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.exceptions import NotFound

from textwire.config import Settings
from textwire.examples.helpdesk import create_bot
from textwire.storage.sql import SqlStore
from textwire.web import Textwire

# Like any Flask extension: made once, bound to each app in the factory.
textwire = Textwire(create_bot())


def create_app(
    settings: Settings | None = None, *, store: SqlStore | None = None
) -> Flask:
    """The shop's app factory (``settings``/``store`` only for tests)."""
    app = Flask(__name__)

    @app.get("/")
    def home() -> str:
        return "<h1>Example Shop</h1><p>Text HELP to our number.</p>"

    @app.errorhandler(NotFound)
    def not_found(exc: NotFound) -> tuple[str, int]:
        return "<h1>Example Shop</h1><p>No such page.</p>", 404

    textwire.init_app(app, settings=settings, store=store, url_prefix="/twilio")
    return app

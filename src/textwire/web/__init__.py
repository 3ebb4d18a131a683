"""The Flask side: Twilio's webhooks, status callbacks, health and media.

Two ways in, one code path:

* ``create_app()`` builds a whole app (``gunicorn 'textwire.web:create_app()'``,
  settings from the environment; tests pass ``create_app(settings, bot=bot,
  store=store)``);
* ``Textwire(bot).init_app(app)`` mounts the same routes on an app you
  already have (see ``examples/embed_flask.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from werkzeug.exceptions import HTTPException

from textwire.bot import Bot
from textwire.config import Settings
from textwire.runtime import Runtime
from textwire.storage.sql import SqlStore
from textwire.web.errors import plain_error, register_database_errors
from textwire.web.extension import Textwire
from textwire.web.runtime import Mount, current_runtime
from textwire.web.webhooks import MAX_FORM_PARTS

__all__ = ["Mount", "Runtime", "Textwire", "create_app", "current_runtime"]


def create_app(
    settings: Settings | None = None,
    *,
    bot: Bot | None = None,
    store: SqlStore | None = None,
    runtime: Runtime | None = None,
    notify: Callable[[], None] | None = None,
) -> Flask:
    """Build the textwire Flask app.

    Args:
        settings: configuration; ``Settings.from_env()`` when omitted.
        bot: the bot; loaded from ``TEXTWIRE_BOT`` (default: the help-desk
            example) when omitted.
        store: the database; built from ``settings.database_url`` when omitted
            (SQLite is migrated on the spot; PostgreSQL must be migrated with
            ``textwire db upgrade``).
        runtime: a runtime built already (``textwire run`` passes its own,
            with the in-process worker); ``settings``, ``bot`` and ``store``
            are then its own.
        notify: called after a webhook recorded a message (the runtime's
            worker, if any, is woken anyway).

    Raises:
        ConfigError: signature validation is on but no auth token is set.
    """
    if runtime is not None:
        settings = runtime.settings
    settings = settings or Settings.from_env()
    app = Flask("textwire")
    # The whole app is textwire's: its limits and plain-text errors (404 and
    # 405 included) apply to every route, also those added later (sandbox).
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.config["MAX_FORM_PARTS"] = MAX_FORM_PARTS
    app.register_error_handler(HTTPException, plain_error)
    register_database_errors(app)
    textwire = Textwire(bot, settings=settings, store=store, notify=notify)
    textwire.init_app(app, runtime=runtime)
    return app

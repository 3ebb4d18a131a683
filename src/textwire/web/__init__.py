"""The Flask side: ``create_app()`` serves Twilio's webhooks, health and media.

Production: ``gunicorn 'textwire.web:create_app()'`` (settings from the
environment). Tests and embedding: ``create_app(settings, bot=bot, store=store)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from textwire.bot import Bot
from textwire.config import Settings
from textwire.errors import ConfigError
from textwire.phone import set_default_region
from textwire.storage.sql import SqlStore
from textwire.web import health, webhooks
from textwire.web.runtime import Runtime, current_runtime

__all__ = ["Runtime", "create_app", "current_runtime"]

logger = logging.getLogger("textwire.web")


def create_app(
    settings: Settings | None = None,
    *,
    bot: Bot | None = None,
    store: SqlStore | None = None,
    notify_queued: Callable[[], None] | None = None,
) -> Flask:
    """Build the textwire Flask app.

    Args:
        settings: configuration; ``Settings.from_env()`` when omitted.
        bot: the bot; loaded from ``TEXTWIRE_BOT`` (default: the help-desk
            example) when omitted.
        store: the database; built from ``settings.database_url`` when omitted
            (SQLite is migrated on the spot; PostgreSQL must be migrated with
            ``textwire db upgrade``).
        notify_queued: called after a webhook queued replies (wakes the
            in-process send worker).

    Raises:
        ConfigError: signature validation is on but no auth token is set.
    """
    settings = settings or Settings.from_env()
    if settings.validate_signatures and not settings.twilio_auth_token:
        raise ConfigError(
            "TWILIO_AUTH_TOKEN is needed to verify Twilio's webhook signatures; "
            "set it (or TEXTWIRE_VALIDATE_SIGNATURES=false for local experiments)"
        )
    if not settings.validate_signatures:
        logger.warning(
            "webhook signature validation is OFF: anyone who can reach this "
            "server can post messages to the bot"
        )
    set_default_region(settings.default_region)
    if bot is None:
        from textwire.loader import load_bot

        bot = load_bot(settings.bot)
    if store is None:
        from textwire.storage.setup import open_store

        store = open_store(settings)

    app = Flask("textwire")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.config["MAX_FORM_PARTS"] = 200
    app.extensions["textwire"] = Runtime(
        settings=settings,
        bot=bot,
        store=store,
        notify_queued=notify_queued or (lambda: None),
    )
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(health.bp)
    app.register_error_handler(HTTPException, _plain_error)
    bot.freeze()
    return app


def _plain_error(exc: HTTPException) -> Response:
    # Short plain-text errors: Twilio's debugger shows them; no HTML, no traces.
    code = exc.code or 500
    return Response(
        f"{code} {exc.name}: {exc.description}\n",
        status=code,
        content_type="text/plain; charset=utf-8",
    )

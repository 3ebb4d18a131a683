"""``Textwire``: textwire as a Flask extension, for an app you already have."""

from __future__ import annotations

import atexit
import logging
import re
from collections.abc import Callable

from flask import Flask

from textwire.bot import Bot
from textwire.config import Settings
from textwire.errors import ConfigError
from textwire.runtime import Runtime
from textwire.storage.sql import SqlStore
from textwire.web import health as health_routes
from textwire.web import media as media_routes
from textwire.web import metrics as metrics_routes
from textwire.web import selftest, webhooks
from textwire.web.runtime import Mount

__all__ = ["Textwire"]

logger = logging.getLogger("textwire.web")

EXTENSION_KEY = "textwire"


class Textwire:
    """Twilio's webhooks, status callbacks, health and media on your Flask app.

    Example::

        from flask import Flask
        from textwire.web import Textwire
        from mybot import bot

        app = Flask(__name__)

        @app.get("/")
        def home() -> str:
            return "My shop"

        Textwire(bot).init_app(app)     # POST /twilio/sms, POST /twilio/status,
                                        # GET /healthz, GET /metrics,
                                        # GET /media/<path>

    ``Textwire(bot, app=app)`` does the same in one step. One ``Textwire`` can
    serve several apps; what each app runs with (a :class:`Mount` around a
    :class:`~textwire.runtime.Runtime`) is kept in
    ``app.extensions["textwire"]``, nothing in module globals.

    Only textwire's own routes change: the app's other routes, error handlers,
    ``MAX_CONTENT_LENGTH`` and the like are left alone, and textwire's
    plain-text errors and request limits apply to its routes only. The
    webhook records each message and answers at once; ``textwire worker``
    (or ``init_app(..., start_worker=True)``) runs the bot and sends its
    replies. With ``TEXTWIRE_REPLY_MODE=twiml`` the bot runs in the request
    and its replies are the answer.

    Args:
        bot: the bot; loaded from ``TEXTWIRE_BOT`` (default: the help-desk
            example) when omitted.
        app: an app to initialise at once, with ``init_app``'s defaults.
        settings: configuration; ``Settings.from_env()`` when omitted.
        store: the database; built from ``settings.database_url`` when omitted
            (SQLite is migrated on the spot; PostgreSQL must be migrated with
            ``textwire db upgrade``).
        notify: called after a webhook recorded a message (e.g. to wake a
            worker of your own).
    """

    def __init__(
        self,
        bot: Bot | None = None,
        app: Flask | None = None,
        *,
        settings: Settings | None = None,
        store: SqlStore | None = None,
        notify: Callable[[], None] | None = None,
    ) -> None:
        self.bot = bot
        self.settings = settings
        self.store = store
        self.notify = notify
        if app is not None:
            self.init_app(app)

    def init_app(
        self,
        app: Flask,
        *,
        settings: Settings | None = None,
        store: SqlStore | None = None,
        runtime: Runtime | None = None,
        url_prefix: str = "/twilio",
        extras_prefix: str = "",
        health: bool = True,
        media: bool = True,
        metrics: bool = True,
        start_worker: bool = False,
        console: bool | None = None,
    ) -> Mount:
        """Mount textwire on ``app``; return what it runs with.

        Args:
            app: the Flask app.
            settings: this app's configuration, instead of the one given to
                the constructor (else ``Settings.from_env()``).
            store: this app's database, instead of the constructor's (else
                one built from ``settings.database_url``).
            runtime: a runtime built already (``Runtime.from_settings``):
                its settings, bot and database are used, and nothing is
                started or stopped here.
            url_prefix: where the webhooks go: ``{url_prefix}/sms`` (point the
                number's *A message comes in* webhook there) and
                ``{url_prefix}/status``.
            extras_prefix: where ``/healthz``, ``/metrics`` and ``/media/<path>`` go
                (``"/textwire"`` → ``/textwire/healthz``); the root by default.
            health: serve ``GET /healthz``.
            media: serve the bot's media folder at ``/media/<path>``.
            metrics: serve ``GET /metrics`` (Prometheus; behind
                ``TEXTWIRE_METRICS_TOKEN`` when set).
            start_worker: also run the worker (the bot's handlers and the
                sending) in threads of this process (needs Twilio
                credentials). Off by default: run ``textwire worker`` beside
                the app, as in production.
            console: serve the operator console at ``/console``; ``None``:
                when the settings enable it (a console password is set).

        Raises:
            ConfigError: a setting is missing (the auth token to check
                signatures, credentials for ``start_worker``), or the app
                already has a route where textwire would go.
            RuntimeError: textwire is already initialised on ``app``.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "textwire is already initialised on this app; call init_app once"
            )
        url_prefix = _prefix(url_prefix, "url_prefix")
        extras_prefix = _prefix(extras_prefix, "extras_prefix")
        if not url_prefix:
            raise ConfigError("url_prefix must not be empty (e.g. '/twilio')")
        routes = [url_prefix + "/sms", url_prefix + "/status"]
        if health:
            routes.append(extras_prefix + "/healthz")
        if media:
            routes.append(extras_prefix + "/media/<path:filename>")
        if metrics:
            routes.append(extras_prefix + "/metrics")
        if runtime is None:
            settings = settings or self.settings or Settings.from_env()
        resolved = runtime.settings if runtime is not None else settings
        assert resolved is not None
        with_console = resolved.console_enabled if console is None else console
        if with_console and not (
            resolved.console_password or resolved.console_password_hash
        ):
            raise ConfigError(
                "console=True needs a password: set TEXTWIRE_CONSOLE_PASSWORD_HASH "
                "or TEXTWIRE_CONSOLE_PASSWORD"
            )
        if with_console:
            routes.append("/console/")
        _check_free(app, routes)

        if runtime is None:
            runtime = self._runtime(
                settings, store, url_prefix + "/status", start_worker=start_worker
            )
        else:
            _check_security(runtime.settings)
        mount = Mount(
            runtime,
            status_path=url_prefix + "/status",
            extras_prefix=extras_prefix,
            notify=self.notify,
        )
        app.extensions[EXTENSION_KEY] = mount
        app.register_blueprint(webhooks.bp, url_prefix=url_prefix)
        app.register_blueprint(selftest.bp, url_prefix=url_prefix)
        if health:
            app.register_blueprint(health_routes.bp, url_prefix=extras_prefix or None)
        if media:
            app.register_blueprint(media_routes.bp, url_prefix=extras_prefix or None)
        if metrics:
            app.register_blueprint(metrics_routes.bp, url_prefix=extras_prefix or None)
        if with_console:
            from textwire.web.console import init_console

            init_console(app, mount)
        return mount

    def _runtime(
        self,
        settings: Settings | None,
        store: SqlStore | None,
        status_path: str,
        *,
        start_worker: bool,
    ) -> Runtime:
        settings = settings or self.settings or Settings.from_env()
        _check_security(settings)
        if start_worker:
            _check_sender(settings)
        runtime = Runtime.from_settings(
            settings,
            bot=self.bot,
            store=store if store is not None else self.store,
            transport="twilio" if start_worker else None,
            worker=start_worker,
            status_path=status_path,
        )
        if start_worker:
            runtime.start()
            # Let what is in hand finish when the process exits.
            atexit.register(runtime.stop)
        return runtime


def _prefix(value: str, name: str) -> str:
    """``"twilio/"`` → ``"/twilio"``; ``""`` and ``"/"`` → ``""``."""
    value = value.strip().strip("/")
    if not _PLAIN_PATH.fullmatch(value):
        raise ConfigError(f"{name} must be a plain path such as '/twilio'")
    return "/" + value if value else ""


_PLAIN_PATH = re.compile(r"[\w.~/-]*")
_VARIABLE = re.compile(r"<[^>]*>")


def _check_free(app: Flask, routes: list[str]) -> None:
    """Refuse to shadow a route the app already has (any methods)."""
    wanted = {_VARIABLE.sub("<>", route): route for route in routes}
    for rule in app.url_map.iter_rules():
        taken = _VARIABLE.sub("<>", rule.rule)
        if taken in wanted:
            raise ConfigError(
                f"the app already has a route {rule.rule} (endpoint "
                f"{rule.endpoint!r}) where textwire would serve {wanted[taken]}: "
                "pass init_app another url_prefix / extras_prefix, or "
                "health=False / media=False"
            )


def _check_security(settings: Settings) -> None:
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


def _check_sender(settings: Settings) -> None:
    if not settings.has_twilio_credentials:
        raise ConfigError(
            "start_worker=True sends through Twilio's API: set TWILIO_ACCOUNT_SID "
            "and TWILIO_AUTH_TOKEN (or leave the sending to `textwire worker`)"
        )
    if not (settings.twilio_phone_number or settings.twilio_messaging_service_sid):
        raise ConfigError(
            "start_worker=True needs a sender: set TWILIO_PHONE_NUMBER or "
            "TWILIO_MESSAGING_SERVICE_SID"
        )

"""``create_sandbox()``: the emulator, its carrier, the phone page and the bot,
as one Flask app on one port.

::

    sandbox = create_sandbox(port=8000)
    server = SandboxServer(sandbox, socket.create_server(("127.0.0.1", 8000)))
    server.start()                        # waitress, the carrier, the worker
    ...
    server.stop()                         # all of it, in order

This module is where the emulator meets the bot: it is the one module of
``textwire.sandbox`` that imports textwire's core (the bot, its settings,
storage, transport and worker, and the error advice of ``textwire.codes``
for the page). The emulator proper (``rules``, ``api``, ``carrier``,
``state``, ``page``) imports none of it, so it checks the bot against
Twilio's rules and not against the bot's own code.

The bot runs exactly as in production: its real ``TwilioTransport`` talks HTTP
to the emulator's REST API on the same server (``/2010-04-01/...``), the
simulated carrier posts Twilio-signed webhooks to ``/twilio/sms`` and status
callbacks to ``/twilio/status``, and the bot checks their signatures.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import socket
from collections.abc import Sequence

from flask import Flask, Response, jsonify

from textwire.bot import Bot
from textwire.codes import describe
from textwire.config import Settings
from textwire.errors import ConfigError, InvalidPhoneNumber
from textwire.phone import normalize
from textwire.runtime import Runtime
from textwire.sandbox.api import Faults, create_api_blueprint
from textwire.sandbox.carrier import Carrier
from textwire.sandbox.page import PageConfig, create_page_blueprint
from textwire.sandbox.rules import is_service_sid
from textwire.sandbox.state import EmulatorState, VirtualPhone
from textwire.server import WaitressServer
from textwire.storage.sql import SqlStore
from textwire.transports.base import Transport
from textwire.worker import Worker

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DEFAULT_NUMBER",
    "Sandbox",
    "SandboxServer",
    "base_url",
    "create_sandbox",
    "default_phones",
]

logger = logging.getLogger("textwire.sandbox")

DEFAULT_NUMBER = "+14155550100"
"""The emulator's number when ``TWILIO_PHONE_NUMBER`` is not set."""

DEFAULT_DATABASE_URL = "sqlite:///textwire-sandbox.db"
"""The bot's database in the sandbox when ``TEXTWIRE_DATABASE_URL`` is not set:
a file of its own in the working directory, apart from ``textwire.db``."""

DEFAULT_MEDIA_STORE = "textwire-sandbox-media"
"""Where the sandbox keeps copies of inbound media when ``TEXTWIRE_MEDIA_STORE``
is not set: a folder of its own, apart from ``textwire-media``."""

_SETTINGS_DEFAULT_DATABASE = Settings().database_url
_SETTINGS_DEFAULT_MEDIA_STORE = Settings().media_store


def default_phones() -> list[VirtualPhone]:
    """The virtual phones a new sandbox has: several countries and formats."""
    return [
        VirtualPhone(
            number="+14155550199",
            label="Ana · San Francisco",
            display="+1 (415) 555-0199",
            country="US",
        ),
        # Her carrier delivers the sender as national digits, no country code:
        # the bot must still answer +14155550142.
        VirtualPhone(
            number="+14155550142",
            label="Ben · national format",
            display="(415) 555-0142",
            country="US",
        ),
        # No MMS to UK numbers: a reply with pictures fails with 30011.
        VirtualPhone(
            number="+447400123456",
            label="Chloe · London",
            display="+44 7400 123456",
            country="GB",
            mms=False,
        ),
        VirtualPhone(
            number="+4915123456789",
            label="Dana · Berlin",
            display="+49 1512 3456789",
            country="DE",
        ),
        VirtualPhone(
            number="+5521987654321",
            label="Eduardo · Rio",
            display="+55 21 98765-4321",
            country="BR",
        ),
        # Switched off: everything sent to it ends undelivered (30003).
        VirtualPhone(
            number="+14155550123",
            label="Fay · phone off",
            display="+1 (415) 555-0123",
            country="US",
            fate="undelivered",
        ),
    ]


def base_url(host: str, port: int) -> str:
    """The URL the sandbox reaches itself at (and a browser opens).

    A wildcard bind address is reached through the loopback address.
    """
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


@dataclasses.dataclass
class Sandbox:
    """A running (or ready to run) sandbox: serve ``app``, call ``start()``."""

    app: Flask
    state: EmulatorState
    carrier: Carrier
    settings: Settings
    runtime: Runtime | None
    url: str
    page: PageConfig | None = None
    console_password: str | None = None
    _started: bool = dataclasses.field(default=False, init=False, repr=False)
    _stopped: bool = dataclasses.field(default=False, init=False, repr=False)

    @property
    def worker(self) -> Worker | None:
        return self.runtime.worker if self.runtime else None

    @property
    def store(self) -> SqlStore | None:
        return self.runtime.store if self.runtime else None

    @property
    def transport(self) -> Transport | None:
        return self.runtime.transport if self.runtime else None

    @property
    def console_url(self) -> str | None:
        """The operator console, when the bot runs (not emulator-only)."""
        return self.url + "/console/" if self.runtime is not None else None

    @property
    def number(self) -> str:
        """The emulator's number, which the phones text and the bot sends from."""
        return self.settings.twilio_phone_number or DEFAULT_NUMBER

    def start(self) -> None:
        """Start the carrier's thread and the in-process worker."""
        if self._started:
            return
        self._started = True
        self.carrier.start()
        if self.runtime is not None:
            self.runtime.start()

    def close_streams(self) -> None:
        """End the pages' event streams (each holds a server thread)."""
        if self.page is not None:
            self.page.close_streams()
        console = self.app.extensions.get("textwire_console")
        if console is not None:
            console.close_streams()

    def stop(self) -> None:
        """End the event streams, stop the worker and the carrier, close the
        database. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self.close_streams()
        if self.runtime is not None:
            self.runtime.stop()
        self.carrier.stop()


def _owned_number(settings: Settings) -> str:
    raw = settings.twilio_phone_number
    if not raw:
        return DEFAULT_NUMBER
    try:
        return normalize(raw, settings.default_region)
    except InvalidPhoneNumber as exc:
        raise ConfigError(f"TWILIO_PHONE_NUMBER {raw!r}: {exc.reason}") from None


def _database_url(settings: Settings) -> str:
    if settings.database_url != _SETTINGS_DEFAULT_DATABASE:
        return settings.database_url
    return DEFAULT_DATABASE_URL


def _media_store(settings: Settings) -> str:
    if settings.media_store != _SETTINGS_DEFAULT_MEDIA_STORE:
        return settings.media_store
    return DEFAULT_MEDIA_STORE


def _emulator_app(settings: Settings) -> Flask:
    app = Flask("textwire.sandbox")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok", mode="emulator-only")

    return app


def create_sandbox(
    settings: Settings | None = None,
    *,
    bot: Bot | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    emulator_only: bool = False,
    phones: Sequence[VirtualPhone] | None = None,
    faults: Faults | None = None,
    step_delay: float = 0.4,
) -> Sandbox:
    """Build a sandbox served at ``http://host:port``.

    Args:
        settings: configuration (``Settings.from_env()`` when omitted). The
            sandbox uses its ``TWILIO_ACCOUNT_SID`` / ``TWILIO_AUTH_TOKEN``
            when set (else it makes up a pair), owns ``TWILIO_PHONE_NUMBER``
            (else ``+14155550100``), and keeps the bot's database in
            ``TEXTWIRE_DATABASE_URL`` when set, else ``textwire-sandbox.db`` in
            the working directory. The Twilio API URL and the public URL are
            always the sandbox's own.
        bot: the bot; ``settings.bot`` (default: the help desk) when omitted.
        host, port: where the app will be served; the URLs the bot, the
            carrier and the page use are built from them.
        emulator_only: serve just the emulator's API and the page (no bot, no
            worker), for testing one's own Twilio code against it.
        phones: the virtual phones; :func:`default_phones` when omitted.
        faults: latency and error knobs for the emulator's API.
        step_delay: seconds between the carrier's status changes.

    Raises:
        ConfigError: a setting the sandbox cannot work with.

    The operator console is always on at ``/console``: with
    ``TEXTWIRE_CONSOLE_PASSWORD`` (or its hash) when set, else a password made
    up here (``Sandbox.console_password``, printed by ``textwire sandbox``).
    """
    settings = settings or Settings.from_env()
    url = base_url(host, port)
    account_sid = settings.twilio_account_sid or "AC" + secrets.token_hex(16)
    auth_token = settings.twilio_auth_token or secrets.token_hex(16)
    number = _owned_number(settings)
    service_sid = settings.twilio_messaging_service_sid
    console_password = settings.console_password
    if not (console_password or settings.console_password_hash):
        console_password = secrets.token_urlsafe(9)
    settings = settings.replace(
        console=not emulator_only,
        console_password=console_password,
        media_store=_media_store(settings),
        twilio_account_sid=account_sid,
        twilio_auth_token=auth_token,
        twilio_phone_number=number,
        twilio_messaging_service_sid=None,
        twilio_api_url=url,
        public_url=url,
        validate_signatures=True,
        database_url=_database_url(settings),
    )

    state = EmulatorState(account_sid=account_sid, auth_token=auth_token)
    owned = state.add_number(number, "textwire sandbox")
    # One Messaging Service with the number, for code that sends through one:
    # TWILIO_MESSAGING_SERVICE_SID when set (the bot itself sends From).
    state.add_service(
        "textwire sandbox",
        [owned],
        sid=service_sid if service_sid and is_service_sid(service_sid) else None,
    )
    for phone in default_phones() if phones is None else phones:
        if phone.number != number:
            state.add_phone(phone)
    carrier = Carrier(state, base_url=url, step_delay=step_delay)

    runtime: Runtime | None = None
    if emulator_only:
        app = _emulator_app(settings)
        bot_name = None
    else:
        from textwire.web import create_app

        # The same runtime as `textwire run`: the bot's real TwilioTransport,
        # built from the settings, talks HTTP to this emulator.
        runtime = Runtime.from_settings(settings, bot=bot, transport="twilio")
        try:
            app = create_app(runtime=runtime)
        except BaseException:
            runtime.stop()
            raise
        owned.sms_url = url + "/twilio/sms"
        owned.sms_method = "POST"
        bot_name = runtime.bot.name

    page = PageConfig(
        number=number,
        url=url,
        bot_name=bot_name,
        explain=describe,
        store=runtime.store if runtime else None,
        settings=runtime.settings if runtime else None,
    )
    app.register_blueprint(create_api_blueprint(state, carrier, faults))
    app.register_blueprint(create_page_blueprint(state, carrier, page))
    app.extensions["textwire.sandbox"] = state
    return Sandbox(
        app=app,
        state=state,
        carrier=carrier,
        settings=settings,
        runtime=runtime,
        url=url,
        page=page,
        console_password=console_password if not emulator_only else None,
    )


class SandboxServer(WaitressServer):
    """A sandbox served by waitress on a thread of its own, and stopped in order.

    Args:
        sandbox: what to serve; started by :meth:`start`, stopped by :meth:`stop`.
        sock: a bound socket (its port is the one ``sandbox.url`` names).
        threads: waitress threads. Every open page holds one for its event
            stream, and the bot's own API calls and the carrier's webhooks
            come back to this server, so be generous.
    """

    def __init__(self, sandbox: Sandbox, sock: socket.socket, *, threads: int = 32):
        # Lookahead lets a stream notice at once that its page was closed.
        super().__init__(
            sandbox.app, sock, threads=threads, channel_request_lookahead=1
        )
        self.sandbox = sandbox

    def start(self) -> None:
        """Serve on a daemon thread; start the carrier and the worker."""
        super().start()
        self.sandbox.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the pages' streams, the worker and the carrier while the server
        still answers them, then the server's threads, then its sockets."""
        self.sandbox.stop()
        super().stop(timeout)

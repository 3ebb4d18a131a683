"""``Runtime``: everything one textwire process runs with, built from settings.

Every entry point uses it — ``textwire run``, ``sandbox``, ``worker``,
``send``, ``dev``, ``create_app`` and ``Textwire.init_app`` — so the stack is
put together in one place::

    runtime = Runtime.from_settings(settings, transport="twilio")
    runtime.start()            # the worker: inbox handling and sending
    ...
    runtime.stop()             # finish what is in hand, close everything
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Literal, TypeVar

from textwire.bot import Bot
from textwire.config import Settings
from textwire.errors import ConfigError
from textwire.storage.sql import SqlStore
from textwire.transports.base import Transport
from textwire.worker import Worker
from textwire.worker.loop import LoopThread

__all__ = ["Runtime", "TransportChoice"]

logger = logging.getLogger("textwire.runtime")

T = TypeVar("T")

TransportChoice = Transport | Literal["twilio", "dry-run"] | None
"""A transport, one to build from the settings (``"twilio"``, or
``"dry-run"``: record and log, send nothing), or none (nothing is sent from
this process)."""


class Runtime:
    """The settings, the bot, the database, the transport and the worker of
    one process, with ``start()`` / ``stop()``.

    Args:
        settings: configuration.
        bot: the bot.
        store: the database.
        transport: how messages leave; ``None``: not from this process.
        worker: run a worker here (handling the inbox, and sending when
            there is a transport). Off for a web process whose messages
            ``textwire worker`` processes handle.
        status_path: where this process's status callback route is mounted.
        owns_store: close ``store`` on ``stop()``.
    """

    def __init__(
        self,
        settings: Settings,
        bot: Bot,
        store: SqlStore,
        transport: Transport | None = None,
        *,
        worker: bool = True,
        owns_store: bool = True,
    ) -> None:
        self.settings = settings
        self.bot = bot
        self.store = store
        self.transport = transport
        self.owns_store = owns_store
        # Where async def handlers run: the worker's, and the TwiML mode's.
        self.loop = LoopThread("textwire-loop")
        self.worker = (
            Worker(store, bot, transport, settings=settings, loop=self.loop)
            if worker
            else None
        )
        self._started = False
        self._stopped = False
        bot.freeze()

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        bot: Bot | None = None,
        store: SqlStore | None = None,
        transport: TransportChoice = None,
        worker: bool = True,
        status_path: str = "/twilio/status",
    ) -> Runtime:
        """Build the runtime ``settings`` describe (``Settings.from_env()``
        when omitted): the bot from ``TEXTWIRE_BOT`` unless given, the
        database from ``TEXTWIRE_DATABASE_URL`` (SQLite migrated on the spot)
        unless given, and the transport asked for.

        Raises:
            ConfigError: the bot cannot be loaded, or the transport lacks a
                setting (credentials, a sender).
            StorageError: the database is unreachable or not migrated.
        """
        settings = settings or Settings.from_env()
        from textwire.phone import set_default_region

        set_default_region(settings.default_region)
        if bot is None:
            from textwire.loader import load_bot

            bot = load_bot(settings.bot)
        owns_store = store is None
        if store is None:
            from textwire.storage.setup import open_store

            store = open_store(settings)
        try:
            built = _transport(settings, transport, status_path)
            return cls(
                settings, bot, store, built, worker=worker, owns_store=owns_store
            )
        except BaseException:
            if owns_store:
                store.dispose()
            raise

    def start(self) -> None:
        """Start the worker (if this runtime has one)."""
        if self._started:
            return
        self._started = True
        if self.worker is not None:
            self.worker.start()

    def wake(self) -> None:
        """A message was recorded: let the worker claim it now."""
        if self.worker is not None:
            self.worker.wake()

    def run_async(self, awaitable: Awaitable[T]) -> T:
        """Run a coroutine on this runtime's event loop and wait for it."""
        return self.loop.run(awaitable)

    def stop(self) -> None:
        """Stop the worker (after what it has in hand), close the transport,
        the event loop and the database. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        if self.worker is not None:
            self.worker.stop()
        if self.transport is not None:
            self.transport.close()
        self.loop.stop()
        if self.owns_store:
            self.store.dispose()


def _transport(
    settings: Settings, choice: TransportChoice, status_path: str
) -> Transport | None:
    if choice is None or isinstance(choice, Transport):
        return choice
    if choice == "dry-run":
        from textwire.transports.dryrun import DryRunTransport

        return DryRunTransport()
    if not settings.has_twilio_credentials:
        raise ConfigError(
            "sending needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN: put them in "
            "the environment or a .env file"
        )
    from textwire.transports.twilio import TwilioTransport

    return TwilioTransport.from_settings(settings, status_path=status_path)

"""What ``textwire run`` and ``textwire dev`` serve, and a server that stops.

``build_stack`` puts together the bot, the store, the send worker and the
Flask app exactly as ``run`` does; ``WaitressServer`` serves an app on a bound
socket in a thread of its own until ``stop()``.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
from typing import Any

from flask import Flask

from textwire.bot import Bot
from textwire.config import Settings
from textwire.storage.sql import SqlStore
from textwire.transports.base import Transport
from textwire.worker import SendWorker

__all__ = [
    "TRUSTED_PROXY_HEADERS",
    "Stack",
    "WaitressServer",
    "build_stack",
    "proxy_options",
]

logger = logging.getLogger("textwire.server")

TRUSTED_PROXY_HEADERS = ("x-forwarded-proto", "x-forwarded-host", "x-forwarded-for")
"""What waitress takes from the trusted proxy: the scheme and host Twilio
called (the URL it signed) and the client's address."""


def proxy_options(trusted_proxy: str | None) -> dict[str, Any]:
    """waitress settings that believe X-Forwarded-* from ``trusted_proxy`` only.

    Waitress removes proxy headers it does not trust
    (``clear_untrusted_proxy_headers``), so without this a TLS proxy's
    X-Forwarded-Proto never reaches the signature check. With ``None`` every
    proxy header is removed.
    """
    if trusted_proxy is None:
        return {"clear_untrusted_proxy_headers": True}
    return {
        "trusted_proxy": trusted_proxy,
        "trusted_proxy_headers": set(TRUSTED_PROXY_HEADERS),
        "clear_untrusted_proxy_headers": True,
    }


@dataclasses.dataclass
class Stack:
    """The bot, its database, the in-process send worker and the app serving them."""

    settings: Settings
    bot: Bot
    store: SqlStore
    app: Flask
    worker: SendWorker | None = None
    transport: Transport | None = None

    def start_worker(self) -> None:
        if self.worker is not None:
            self.worker.start()

    def close(self) -> None:
        """Stop the worker (after its current batch), close the transport and
        the database connections."""
        if self.worker is not None:
            self.worker.stop()
        if self.transport is not None:
            self.transport.close()
        self.store.dispose()


def build_stack(settings: Settings, transport: Transport | None) -> Stack:
    """Load the bot, open (and for SQLite migrate) the store, build the worker
    (when there is a transport) and the app.

    Raises:
        ConfigError: the bot cannot be loaded, or the settings do not allow
            an app (e.g. signatures on but no auth token).
        StorageError: the database is unreachable or not migrated.
    """
    from textwire.loader import load_bot
    from textwire.storage.setup import open_store
    from textwire.web import create_app

    bot = load_bot(settings.bot)
    store = open_store(settings)
    try:
        worker = SendWorker(store, transport, settings=settings) if transport else None
        app = create_app(
            settings,
            bot=bot,
            store=store,
            notify_queued=worker.wake if worker else None,
        )
    except BaseException:
        store.dispose()
        raise
    return Stack(
        settings=settings,
        bot=bot,
        store=store,
        app=app,
        worker=worker,
        transport=transport,
    )


class WaitressServer:
    """Serve a WSGI app with waitress on a bound socket, in a thread of its own.

    Args:
        app: the WSGI application.
        sock: a bound, listening socket; the server owns it from now on.
        threads: waitress worker threads.
        trusted_proxy: whose X-Forwarded-* headers to believe (see
            :func:`proxy_options`); ``None``: nobody's.
        options: more ``waitress.create_server`` settings.
    """

    def __init__(
        self,
        app: Any,
        sock: socket.socket,
        *,
        threads: int = 8,
        trusted_proxy: str | None = None,
        **options: Any,
    ) -> None:
        import waitress

        self.server: Any = waitress.create_server(
            app,
            sockets=[sock],
            threads=threads,
            ident="textwire",
            **proxy_options(trusted_proxy),
            **options,
        )
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.server.run, name="textwire-http", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the requests in progress, then close every socket."""
        from waitress import wasyncore

        self.server.task_dispatcher.shutdown(timeout=5)
        if self._thread is None:
            wasyncore.close_all(self.server._map)
            return
        # The socket map belongs to the server's thread: close it there.
        self.server.trigger.pull_trigger(lambda: wasyncore.close_all(self.server._map))
        self._thread.join(timeout)
        self._thread = None

"""What ``textwire run`` and ``textwire dev`` serve, and a server that stops.

``build_stack`` builds the :class:`~textwire.runtime.Runtime` and the Flask app
serving it exactly as ``run`` does; ``WaitressServer`` serves an app on a
bound socket in a thread of its own until ``stop()``.
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
from textwire.runtime import Runtime, TransportChoice
from textwire.storage.sql import SqlStore
from textwire.worker import Worker

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
    """A runtime and the app serving it."""

    runtime: Runtime
    app: Flask

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def bot(self) -> Bot:
        return self.runtime.bot

    @property
    def store(self) -> SqlStore:
        return self.runtime.store

    @property
    def worker(self) -> Worker | None:
        return self.runtime.worker

    def start_worker(self) -> None:
        self.runtime.start()

    def close(self) -> None:
        """Stop the worker (after what it has in hand), close the transport
        and the database connections."""
        self.runtime.stop()


def build_stack(
    settings: Settings, transport: TransportChoice, *, worker: bool = True
) -> Stack:
    """Build the runtime (bot, store, worker with ``transport``) and the app.

    Raises:
        ConfigError: the bot cannot be loaded, or the settings do not allow
            an app (e.g. signatures on but no auth token).
        StorageError: the database is unreachable or not migrated.
    """
    from textwire.web import create_app

    runtime = Runtime.from_settings(settings, transport=transport, worker=worker)
    try:
        app = create_app(runtime=runtime)
    except BaseException:
        runtime.stop()
        raise
    return Stack(runtime=runtime, app=app)


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

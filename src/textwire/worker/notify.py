"""Wake workers on other machines at once: PostgreSQL ``LISTEN``/``NOTIFY``.

The webhook's insert notifies ``textwire_inbox`` in the same statement; each
worker listens on a connection of its own and claims as soon as a
notification arrives. The poll (``TEXTWIRE_WORKER_POLL_INTERVAL``) stays as
the fallback: a worker whose listening connection dropped still finds every
row, only later.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.engine import make_url

__all__ = ["PgListener"]

logger = logging.getLogger("textwire.worker")


class PgListener:
    """Calls ``on_notify`` for each notification on ``channel``, from a thread.

    Args:
        url: the SQLAlchemy URL of the PostgreSQL database.
        channel: the channel to ``LISTEN`` on.
        on_notify: called (from the listening thread) for each notification,
            and once after each (re)connection, for what was missed meanwhile.
    """

    def __init__(self, url: str, channel: str, on_notify: Callable[[], None]) -> None:
        parsed = make_url(url)
        self._conninfo = parsed.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self.channel = channel
        self.on_notify = on_notify
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="textwire-listen", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        import psycopg

        failures = 0
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f'LISTEN "{self.channel}"')
                    self.connected.set()
                    failures = 0
                    self.on_notify()
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            self.on_notify()
            except Exception as exc:
                self.connected.clear()
                failures += 1
                if failures == 1:
                    logger.warning(
                        "LISTEN %s lost (%s): polling until it is back",
                        self.channel,
                        type(exc).__name__,
                    )
                self._stop.wait(min(30.0, 0.5 * 2**failures))

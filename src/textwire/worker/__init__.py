"""The worker: handles the inbox (the bot) and sends the outbox (Twilio).

``textwire worker`` runs one :class:`Worker` per process, on as many machines
as wanted against one PostgreSQL; ``textwire run`` runs one in a thread of the
web server's process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import datetime

from textwire.bot import Bot
from textwire.config import Settings
from textwire.storage.base import Store
from textwire.storage.inbox import NOTIFY_CHANNEL
from textwire.transports.base import Transport
from textwire.worker.backoff import compute_backoff
from textwire.worker.inbox import InboxWorker
from textwire.worker.loop import LoopThread
from textwire.worker.notify import PgListener
from textwire.worker.sender import SendWorker

__all__ = ["InboxWorker", "LoopThread", "SendWorker", "Worker", "compute_backoff"]

logger = logging.getLogger("textwire.worker")


def new_worker_id() -> str:
    """``host:pid:random``, unique among every worker sharing a database."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """The inbox and the outbox of one process: handle, then send.

    The two sides have pools of their own (``TEXTWIRE_HANDLER_CONCURRENCY``
    handlers, the send concurrency), so slow handlers never hold up sending
    and a send backlog never delays handling. A handled message's replies
    wake the send side at once; on PostgreSQL a new inbox row wakes every
    worker through ``LISTEN``/``NOTIFY``.

    Args:
        store: the database.
        bot: the bot whose handlers run here.
        transport: how messages leave (``None``: this worker only handles,
            its replies wait for another worker to send them).
        settings: configuration.
        public_url: base of the bot's media URLs (else the settings').
        loop: the event loop ``async def`` handlers run on (else one of its own).
    """

    def __init__(
        self,
        store: Store,
        bot: Bot,
        transport: Transport | None,
        *,
        settings: Settings | None = None,
        worker_id: str | None = None,
        public_url: str | None = None,
        loop: LoopThread | None = None,
    ) -> None:
        settings = settings or Settings()
        self.worker_id = worker_id or new_worker_id()
        self.store = store
        self.sender = (
            SendWorker(store, transport, settings=settings, worker_id=self.worker_id)
            if transport is not None
            else None
        )
        self.inbox = InboxWorker(
            store,
            bot,
            settings=settings,
            worker_id=self.worker_id,
            loop=loop,
            on_queued=self.sender.wake if self.sender else None,
            public_url=public_url,
        )
        self.listener = (
            PgListener(store.url, NOTIFY_CHANNEL, self.inbox.wake)
            if store.dialect == "postgresql"
            else None
        )
        self._started = False

    def run_once(self, now: datetime | None = None) -> int:
        """Handle the due inbox rows, then send the due outbox rows (one batch
        each); how many rows were taken. Tests and tools step with it."""
        handled = self.inbox.run_once(now)
        sent = self.sender.run_once(now) if self.sender is not None else 0
        return handled + sent

    def wake(self) -> None:
        """A message was recorded: claim it now."""
        self.inbox.wake()

    def wake_sender(self) -> None:
        """Rows were queued (``textwire send``, the console): send them now."""
        if self.sender is not None:
            self.sender.wake()

    def start(self) -> None:
        """Handle and send in threads of this process until ``stop()``."""
        if self._started:
            return
        self._started = True
        self.inbox.start()
        if self.sender is not None:
            self.sender.start()
        if self.listener is not None:
            self.listener.start()
        logger.info("worker %s started", self.worker_id)

    def run_forever(self, stop: threading.Event) -> None:
        """``start()``, wait for ``stop``, then ``stop()``."""
        self.start()
        stop.wait()
        self.stop()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is in hand (up to ``timeout`` each), then stop."""
        if self.listener is not None:
            self.listener.stop()
        self.inbox.stop(timeout)
        if self.sender is not None:
            self.sender.stop(timeout)
        self._started = False
        logger.info("worker %s stopped", self.worker_id)

"""What the views need, kept per app in ``app.extensions["textwire"]``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime

from flask import current_app

from textwire.bot import Bot
from textwire.config import Settings
from textwire.runtime import Runtime
from textwire.storage.sql import SqlStore

__all__ = ["Mount", "current_runtime"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass(slots=True)
class Mount:
    """textwire as mounted on one app: its :class:`~textwire.runtime.Runtime`
    and where its routes are.

    Attributes:
        runtime: the settings, bot, database and (maybe) worker.
        status_path: path of the status callback route, as mounted
            (``/twilio/status`` unless ``init_app`` got another ``url_prefix``).
        extras_prefix: where ``/healthz`` and ``/media/…`` are mounted
            (``""``: at the root); the bot's media URLs include it.
        notify: called after a webhook recorded a message (wakes the worker).
        clock: the time, for the views.
    """

    runtime: Runtime
    status_path: str = "/twilio/status"
    extras_prefix: str = ""
    notify: Callable[[], None] | None = None
    clock: Callable[[], datetime] = _utcnow

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def bot(self) -> Bot:
        return self.runtime.bot

    @property
    def store(self) -> SqlStore:
        return self.runtime.store

    def recorded(self) -> None:
        """A message was recorded: wake the worker(s)."""
        self.runtime.wake()
        if self.notify is not None:
            self.notify()


def current_runtime() -> Mount:
    """The :class:`Mount` of the app handling this request."""
    mount: Mount = current_app.extensions["textwire"]
    return mount

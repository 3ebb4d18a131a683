"""What the views need, kept per app in ``app.extensions["textwire"]``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from flask import current_app

from textwire.bot import Bot
from textwire.config import Settings
from textwire.storage.sql import SqlStore

if TYPE_CHECKING:
    from textwire.worker import SendWorker

__all__ = ["Runtime", "current_runtime"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _nothing() -> None:
    return None


@dataclasses.dataclass(slots=True)
class Runtime:
    """The objects one textwire app runs with.

    Attributes:
        status_path: path of the status callback route, as mounted
            (``/twilio/status`` unless ``init_app`` got another ``url_prefix``).
        extras_prefix: where ``/healthz`` and ``/media/…`` are mounted
            (``""``: at the root); the bot's media URLs include it.
        worker: the in-process send worker ``init_app(start_worker=True)``
            started, if any.
    """

    settings: Settings
    bot: Bot
    store: SqlStore
    notify_queued: Callable[[], None] = _nothing
    clock: Callable[[], datetime] = _utcnow
    status_path: str = "/twilio/status"
    extras_prefix: str = ""
    worker: SendWorker | None = None


def current_runtime() -> Runtime:
    runtime: Runtime = current_app.extensions["textwire"]
    return runtime

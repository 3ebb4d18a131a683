"""What the views need, kept in ``app.extensions["textwire"]``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime

from flask import current_app

from textwire.bot import Bot
from textwire.config import Settings
from textwire.storage.sql import SqlStore

__all__ = ["Runtime", "current_runtime"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _nothing() -> None:
    return None


@dataclasses.dataclass(slots=True)
class Runtime:
    """The objects one textwire app runs with."""

    settings: Settings
    bot: Bot
    store: SqlStore
    notify_queued: Callable[[], None] = _nothing
    clock: Callable[[], datetime] = _utcnow


def current_runtime() -> Runtime:
    runtime: Runtime = current_app.extensions["textwire"]
    return runtime

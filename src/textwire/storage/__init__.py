"""Persistence: schema, migrations, and one module per concern (SQLite and
PostgreSQL): ``engine``, ``inbox``, ``outbox``, ``contacts``, ``ratelimits``,
``messages``, ``state``; ``SqlStore`` holds them all."""

from __future__ import annotations

from textwire.storage.sql import ClaimedInbound, ClaimedItem, SqlStateStore, SqlStore

__all__ = ["ClaimedInbound", "ClaimedItem", "SqlStateStore", "SqlStore"]

"""Persistence: schema, the SQL store (SQLite + PostgreSQL) and migrations."""

from __future__ import annotations

from textwire.storage.sql import ClaimedItem, SqlStateStore, SqlStore

__all__ = ["ClaimedItem", "SqlStateStore", "SqlStore"]

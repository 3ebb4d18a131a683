"""Open the configured database, migrating SQLite on the spot."""

from __future__ import annotations

import logging

from textwire.config import Settings
from textwire.storage.sql import SqlStore

__all__ = ["open_store"]

logger = logging.getLogger("textwire.storage")


def open_store(settings: Settings, *, migrate_sqlite: bool = True) -> SqlStore:
    """The store for ``settings.database_url``, ready to use.

    SQLite (one machine, nothing to administer) is brought to the latest
    schema here. PostgreSQL is shared by many processes, so its migrations
    run once, by ``textwire db upgrade``; here it is only checked.

    Raises:
        StorageError: unreachable, or PostgreSQL not migrated.
    """
    store = SqlStore(settings.database_url)
    migrate = store.dialect == "sqlite" and migrate_sqlite
    if migrate and store.current_revision() != store.head_revision():
        logger.info("migrating %r", store)
        store.upgrade()
    store.check()
    return store

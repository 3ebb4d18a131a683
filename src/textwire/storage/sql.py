"""``SqlStore``: one database and the tables textwire keeps in it.

Each concern is a module of its own (``engine``, ``inbox``, ``outbox``,
``contacts``, ``ratelimits``, ``messages``, ``state``); a ``SqlStore`` holds
one of each, built on one :class:`~textwire.storage.engine.Database`::

    store = SqlStore("sqlite:///textwire.db")
    store.inbox.record(msg, now)            # the webhook
    store.outbox.claim(now, limit=20, ...)  # the send worker
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine

from .base import Store
from .broadcasts import SqlBroadcasts
from .console import SqlConsole
from .contacts import SqlContacts
from .engine import Database, normalize_database_url
from .inbox import ClaimedInbound, SqlInbox
from .messages import SqlMessages
from .outbox import OPEN_OUTBOX, TWIML_OUTBOX, ClaimedItem, NewMessage, SqlOutbox
from .ratelimits import SqlRateLimits
from .state import SqlStates, SqlStateStore

__all__ = [
    "OPEN_OUTBOX",
    "TWIML_OUTBOX",
    "ClaimedInbound",
    "ClaimedItem",
    "NewMessage",
    "SqlStateStore",
    "SqlStore",
    "normalize_database_url",
]


class SqlStore:
    """Contacts, messages, conversation state, the inbox and the outbox in one
    database (SQLite or PostgreSQL).

    Attributes:
        db: the database (transactions, migrations).
        inbox: inbound messages to handle (:class:`~textwire.storage.inbox.SqlInbox`).
        outbox: outbound messages to send (:class:`~textwire.storage.outbox.SqlOutbox`).
        contacts: contacts and their opt-out state.
        rates: each sender's rate-limit slots.
        messages: history and delivery status (status callbacks).
        states: conversation state.
        console: what the operator console reads and does.
        broadcasts: bulk sends from CSV files and their progress.
    """

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.db = Database(url, engine=engine)
        self.contacts = SqlContacts(self.db)
        self.rates = SqlRateLimits(self.db)
        self.messages = SqlMessages(self.db, self.contacts)
        self.states = SqlStates(self.db)
        self.outbox = SqlOutbox(self.db, self.rates)
        self.inbox = SqlInbox(self.db, self.contacts, self.states, self.outbox)
        self.console = SqlConsole(self.db, self.contacts, self.outbox)
        self.broadcasts = SqlBroadcasts(self.db, self.outbox)

    def __repr__(self) -> str:
        return f"SqlStore({self.db!r})"

    @property
    def url(self) -> str:
        return self.db.url

    @property
    def engine(self) -> Engine:
        return self.db.engine

    @property
    def dialect(self) -> str:
        return self.db.dialect

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One write transaction (see :meth:`Database.begin`)."""
        with self.db.begin() as conn:
            yield conn

    def check(self) -> None:
        """Raise ``StorageError`` unless the database answers and is migrated."""
        self.db.check()

    def upgrade(self, revision: str = "head") -> None:
        self.db.upgrade(revision)

    def current_revision(self) -> str | None:
        return self.db.current_revision()

    def head_revision(self) -> str | None:
        return self.db.head_revision()

    def dispose(self) -> None:
        self.db.dispose()


if TYPE_CHECKING:

    def _is_a_store(store: SqlStore) -> Store:
        """Never called: mypy checks here that a SqlStore fits the protocols."""
        return store

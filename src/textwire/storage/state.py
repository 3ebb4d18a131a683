"""Conversation state in the ``conversation_state`` table."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Connection, Table, bindparam, delete, select

from textwire.conversation import ConversationKey, StateRecord

from .engine import Database
from .schema import ConversationStateRow, utcnow

__all__ = ["SqlStateStore", "SqlStates"]

_table = cast(Table, ConversationStateRow.__table__)


class SqlStates:
    """The statements of ``conversation_state``, built once per database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        key = (_table.c.bot_number == bindparam("bot_number")) & (
            _table.c.contact == bindparam("contact")
        )
        self.load = select(_table.c.state, _table.c.data, _table.c.expires_at).where(
            key
        )
        insert = db.insert(_table).values(
            bot_number=bindparam("bot_number"),
            contact=bindparam("contact"),
            state=bindparam("state"),
            data=bindparam("data"),
            expires_at=bindparam("expires_at"),
            updated_at=bindparam("updated_at"),
        )
        self.save = insert.on_conflict_do_update(
            index_elements=["bot_number", "contact"],
            set_={
                "state": insert.excluded.state,
                "data": insert.excluded.data,
                "expires_at": insert.excluded.expires_at,
                "updated_at": insert.excluded.updated_at,
            },
        )
        self.delete = delete(_table).where(key)

    def store(self, conn: Connection) -> SqlStateStore:
        """A ``StateStore`` working inside ``conn``'s transaction."""
        return SqlStateStore(self, conn)

    def reader(self) -> ReadingStateStore:
        """A ``StateStore`` that reads on a connection of its own (a handler
        reads state outside any transaction; its writes are buffered)."""
        return ReadingStateStore(self)


class SqlStateStore:
    """Conversation state inside one connection's transaction."""

    def __init__(self, states: SqlStates, conn: Connection) -> None:
        self._states = states
        self._conn = conn

    def load(self, key: ConversationKey) -> StateRecord | None:
        row = self._conn.execute(self._states.load, _key(key)).first()
        if row is None:
            return None
        return StateRecord(
            state=row.state, data=row.data or {}, expires_at=row.expires_at
        )

    def save(self, key: ConversationKey, record: StateRecord) -> None:
        self._conn.execute(
            self._states.save,
            {
                **_key(key),
                "state": record.state,
                "data": dict(record.data),
                "expires_at": record.expires_at,
                "updated_at": utcnow(),
            },
        )

    def delete(self, key: ConversationKey) -> None:
        self._conn.execute(self._states.delete, _key(key))


class ReadingStateStore:
    """Reads conversation state on short connections of its own; never writes."""

    def __init__(self, states: SqlStates) -> None:
        self._states = states

    def load(self, key: ConversationKey) -> StateRecord | None:
        with self._states.db.read() as conn:
            return SqlStateStore(self._states, conn).load(key)

    def save(self, key: ConversationKey, record: StateRecord) -> None:
        raise RuntimeError("state is written with the handler's other effects")

    def delete(self, key: ConversationKey) -> None:
        raise RuntimeError("state is written with the handler's other effects")


def _key(key: ConversationKey) -> dict[str, str]:
    return {"bot_number": key.bot_number, "contact": key.contact}

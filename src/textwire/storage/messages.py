"""Every message in either direction, and its delivery status.

Status callbacks land here: a status only moves forward
(``textwire.status``), and a code meaning "the recipient replied STOP"
(``textwire.codes.means_opted_out``) opts the recipient out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, String, Table, case, literal_column, select, update

from textwire import status as statuses
from textwire.codes import means_opted_out

from .contacts import SqlContacts
from .engine import Database
from .schema import Message, OutboxItem

__all__ = ["SqlMessages", "advance_status_values"]

_table = cast(Table, Message.__table__)


def advance_status_values(new: str) -> Any:
    """The SQL value that moves ``messages.status`` to ``new`` if that is
    forward (``textwire.status``), else keeps it: one UPDATE, no read.

    The statuses are written into the SQL (no parameters): they are
    ``textwire.status``'s own names, so the statement can be prepared once
    per status; anything else keeps the column as it is.
    """
    lower = statuses.lower_than(new)
    if not lower:
        return _table.c.status

    def named(status: str) -> Any:
        assert _STATUS_NAME.fullmatch(status), status
        return literal_column(f"'{status}'", String)

    return case(
        (_table.c.status.in_([named(s) for s in lower]), named(new)),
        else_=_table.c.status,
    )


_STATUS_NAME = re.compile(r"[a-z_]+")


class SqlMessages:
    """The ``messages`` table: history, SIDs and delivery status."""

    def __init__(self, db: Database, contacts: SqlContacts) -> None:
        self.db = db
        self.contacts = contacts

    def update_status(
        self,
        *,
        sid: str | None,
        outbox_id: int | None,
        status: str,
        error_code: int | None,
        error_message: str | None,
        now: datetime,
    ) -> bool:
        """Apply a status callback; return whether a message was found.

        The status only moves forward; an opt-out error code (21610) marks the
        recipient opted out.
        """
        with self.db.begin() as conn:
            where = self._locate(conn, sid=sid, outbox_id=outbox_id, now=now)
            if where is None:
                return False
            found = conn.execute(
                select(_table.c.id, _table.c.to_number).where(where)
            ).first()
            if found is None:
                return False
            values: dict[str, Any] = {"updated_at": now}
            if error_code is not None:
                values["error_code"] = error_code
                values["error_message"] = error_message
            if statuses.rank(status) is None:
                _log_unknown(status)
            else:
                values["status"] = advance_status_values(status)
            conn.execute(update(Message).where(where).values(**values))
            if means_opted_out(error_code):
                # Twilio says the recipient replied STOP (21610).
                self.contacts.set_opt_out(conn, found.to_number, True, now)
            return True

    def _locate(
        self,
        conn: Connection,
        *,
        sid: str | None,
        outbox_id: int | None,
        now: datetime,
    ) -> Any:
        if outbox_id is None:
            return Message.sid == sid if sid else None
        message_id = conn.execute(
            select(OutboxItem.message_id).where(OutboxItem.id == outbox_id)
        ).scalar_one_or_none()
        if message_id is None:
            return None
        where = Message.id == message_id
        if sid:
            # A TwiML reply learns its SID only here; a REST row may hear back
            # before the worker stored it (the same SID). The outbox row first,
            # then the message: the order the worker's mark_sent locks them in
            # (else the two deadlock when a callback races the worker).
            conn.execute(
                update(OutboxItem)
                .where(OutboxItem.id == outbox_id, OutboxItem.provider_sid.is_(None))
                .values(provider_sid=sid)
            )
            conn.execute(
                update(Message)
                .where(where, Message.sid.is_(None))
                .values(sid=sid, updated_at=now)
            )
        return where

    def all(self, direction: str | None = None) -> list[dict[str, Any]]:
        """Every message (of ``direction``), oldest first, as dicts."""
        stmt = select(*_table.c).order_by(_table.c.id)
        if direction:
            stmt = stmt.where(_table.c.direction == direction)
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def known_sids(
        self, sids: Sequence[str], *, except_message: int | None = None
    ) -> set[str]:
        """Which of ``sids`` are already stored on a message (other than
        ``except_message``)."""
        if not sids:
            return set()
        stmt = select(_table.c.sid).where(_table.c.sid.in_(sids))
        if except_message is not None:
            stmt = stmt.where(_table.c.id != except_message)
        with self.db.read() as conn:
            return {sid for sid in conn.execute(stmt).scalars() if sid}


def _log_unknown(status: str) -> None:
    import logging

    logging.getLogger("textwire.storage").warning(
        "unknown message status %r kept as is", status
    )

"""Broadcasts: one bulk send from a CSV file, its state and its rows' progress.

A broadcast is rows in the database: its own row here (template, counts,
state, how many of the file's rows are imported) and one outbox row per
message, linked by ``broadcast_id``. Import commits its rows in batches, each
batch together with the count of rows imported, so an import killed midway
resumes where its last batch ended and no recipient is queued twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, case, func, select, update

from textwire.errors import BroadcastError, StorageError

from .engine import Database
from .outbox import CANCELLED, OPEN_OUTBOX, NewMessage, SqlOutbox
from .schema import Broadcast, Message, OutboxItem

__all__ = ["ACTIVE", "BROADCAST_STATES", "SqlBroadcasts", "already_made"]

_table = cast(Table, Broadcast.__table__)

BROADCAST_STATES = ("importing", "sending", "paused", "cancelled")
ACTIVE = "sending"

# Outbox statuses of a broadcast's rows, as counted by progress().
_ROW_STATES = ("queued", "sending", "unknown", "sent", "failed", CANCELLED)


class SqlBroadcasts:
    """The ``broadcasts`` table, and its rows in the outbox."""

    def __init__(self, db: Database, outbox: SqlOutbox) -> None:
        self.db = db
        self.outbox = outbox

    # -- creating and importing --------------------------------------------------

    def find(self, name: str, sha256: str) -> dict[str, Any] | None:
        """The broadcast of ``name`` made from the file with that SHA-256."""
        with self.db.read() as conn:
            row = conn.execute(
                select(*_table.c).where(
                    _table.c.name == name, _table.c.source_sha256 == sha256
                )
            ).first()
        return dict(row._mapping) if row is not None else None

    def create(self, *, now: datetime, **values: Any) -> int:
        """A new broadcast, ``importing``; its id.

        Raises:
            BroadcastError: one of that name was made from the same file.
        """
        existing = self.find(values["name"], values["source_sha256"])
        if existing is not None:
            raise already_made(existing)
        try:
            with self.db.begin() as conn:
                new_id: int = conn.execute(
                    self.db.insert(_table)
                    .values(
                        status="importing",
                        imported_rows=0,
                        created_at=now,
                        updated_at=now,
                        planned_at=now,
                        **values,
                    )
                    .returning(_table.c.id)
                ).scalar_one()
                return new_id
        except StorageError:
            # A concurrent create of the same name and file won the race.
            existing = self.find(values["name"], values["source_sha256"])
            if existing is not None:
                raise already_made(existing) from None
            raise

    def commit_batch(
        self,
        broadcast_id: int,
        messages: Sequence[NewMessage],
        *,
        imported_rows: int,
        counts: dict[str, int],
        now: datetime,
    ) -> bool:
        """Queue one batch of a broadcast's messages and record how far the
        import got, in one transaction; False (nothing written) when the
        broadcast is no longer importing (cancelled meanwhile)."""
        with self.db.begin() as conn:
            moved = conn.execute(
                update(Broadcast)
                .where(Broadcast.id == broadcast_id, Broadcast.status == "importing")
                .values(imported_rows=imported_rows, updated_at=now, **counts)
            )
            if moved.rowcount != 1:
                return False
            self.outbox.enqueue_batch(conn, messages, now=now)
            return True

    def refresh_statistics(self) -> None:
        """PostgreSQL: ANALYZE the outbox after a broadcast added many rows,
        so the claim's ordered index scan is planned at once (autovacuum
        would do it only later; until then each claim sorts the backlog)."""
        if self.db.dialect == "postgresql":
            with self.db.begin() as conn:
                conn.exec_driver_sql("ANALYZE outbox")

    def queued_numbers(self, broadcast_id: int) -> set[str]:
        """The numbers a broadcast has outbox rows for already."""
        with self.db.read() as conn:
            return set(
                conn.execute(
                    select(OutboxItem.to_number).where(
                        OutboxItem.broadcast_id == broadcast_id
                    )
                ).scalars()
            )

    # -- state -----------------------------------------------------------------

    def get(self, broadcast_id: int) -> dict[str, Any]:
        """One broadcast as a dict.

        Raises:
            BroadcastError: no broadcast has that id.
        """
        with self.db.read() as conn:
            row = conn.execute(
                select(*_table.c).where(_table.c.id == broadcast_id)
            ).first()
        if row is None:
            raise BroadcastError(
                f"no broadcast #{broadcast_id} (`textwire broadcast list` shows them)"
            )
        return dict(row._mapping)

    def all(self) -> list[dict[str, Any]]:
        """Every broadcast, newest first."""
        with self.db.read() as conn:
            rows = conn.execute(select(*_table.c).order_by(_table.c.id.desc()))
            return [dict(r._mapping) for r in rows]

    def move(
        self, broadcast_id: int, to: str, *, only_from: Sequence[str], now: datetime
    ) -> bool:
        """Set the state to ``to`` if it is one of ``only_from`` (atomically)."""
        with self.db.begin() as conn:
            return self._move(conn, broadcast_id, to, only_from, now)

    def _move(
        self,
        conn: Connection,
        broadcast_id: int,
        to: str,
        only_from: Sequence[str],
        now: datetime,
    ) -> bool:
        result = conn.execute(
            update(Broadcast)
            .where(Broadcast.id == broadcast_id, Broadcast.status.in_(only_from))
            .values(status=to, updated_at=now)
        )
        return result.rowcount == 1

    def cancel(self, broadcast_id: int, *, now: datetime) -> int | None:
        """Cancel a broadcast and every row of it that still waits; how many
        rows were cancelled (``None``: it was cancelled already). Rows in
        flight finish (they may be at Twilio already)."""
        with self.db.begin() as conn:
            moved = self._move(
                conn, broadcast_id, "cancelled", ("importing", "sending", "paused"), now
            )
        if not moved:
            return None
        return self.outbox.cancel_broadcast(broadcast_id, now=now)

    # -- progress ----------------------------------------------------------------

    def progress(self, broadcast_id: int, now: datetime) -> dict[str, int]:
        """A broadcast's rows by outbox status, and among the queued ones how
        many wait for their send time (``scheduled``) or for quiet hours to
        end (``held``); ``delivered`` and ``undelivered`` (of the sent ones)
        by delivery status; ``total``."""
        queued = OutboxItem.status == "queued"
        columns: list[Any] = [_count(OutboxItem.status == s) for s in _ROW_STATES]
        columns += [
            _count(and_(queued, OutboxItem.held_until > now)),
            _count(and_(queued, OutboxItem.send_at > now)),
            _count(Message.status == "delivered"),
            # Sent, then not delivered: a row that failed before Twilio took
            # it has a failed message too, but counts as failed only.
            _count(
                and_(
                    OutboxItem.status == "sent",
                    Message.status.in_(("undelivered", "failed")),
                )
            ),
            func.count(),
        ]
        stmt = (
            select(*columns)
            .select_from(OutboxItem)
            .join(Message, Message.id == OutboxItem.message_id)
            .where(OutboxItem.broadcast_id == broadcast_id)
        )
        with self.db.read() as conn:
            values = conn.execute(stmt).one()
        names = [*_ROW_STATES, "held", "scheduled", "delivered", "undelivered"]
        counts = {name: int(v) for name, v in zip(names, values, strict=False)}
        counts["total"] = int(values[-1])
        counts["open"] = sum(counts[s] for s in OPEN_OUTBOX)
        return counts

    def export(self, broadcast_id: int) -> Iterator[dict[str, Any]]:
        """Each of a broadcast's messages with its final state, in queue order
        (streamed in pages)."""
        last = 0
        while True:
            with self.db.read() as conn:
                page = conn.execute(
                    _rows_of(broadcast_id)
                    .where(OutboxItem.id > last)
                    .order_by(OutboxItem.id)
                    .limit(1000)
                ).all()
            if not page:
                return
            for row in page:
                yield dict(row._mapping)
            last = page[-1].id

    def recent(
        self, broadcast_id: int, *, status: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """A broadcast's messages that changed last (of one outbox ``status``
        when given), as :meth:`export` has them, with their send time, quiet
        hours hold, attempts and next try."""
        stmt = _rows_of(broadcast_id).add_columns(
            OutboxItem.send_at,
            OutboxItem.held_until,
            OutboxItem.attempts,
            OutboxItem.next_attempt_at,
        )
        if status is not None:
            stmt = stmt.where(OutboxItem.status == status)
        stmt = stmt.order_by(OutboxItem.updated_at.desc(), OutboxItem.id.desc())
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt.limit(limit))]


def _rows_of(broadcast_id: int) -> Any:
    """A broadcast's outbox rows with their message's delivery state."""
    return (
        select(
            OutboxItem.id,
            OutboxItem.to_number,
            OutboxItem.status,
            Message.status.label("delivery"),
            func.coalesce(Message.sid, OutboxItem.provider_sid).label("sid"),
            func.coalesce(Message.error_code, OutboxItem.last_error_code).label(
                "error_code"
            ),
            func.coalesce(Message.error_message, OutboxItem.last_error).label("error"),
            OutboxItem.updated_at,
        )
        .join(Message, Message.id == OutboxItem.message_id)
        .where(OutboxItem.broadcast_id == broadcast_id)
    )


def _count(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def already_made(existing: dict[str, Any]) -> BroadcastError:
    """The error for a broadcast made from the same file under the same name."""
    return BroadcastError(
        f"broadcast #{existing['id']} ({existing['name']!r}) was already made from "
        f"this file ({existing['status']}): `textwire broadcast status "
        f"{existing['id']}`"
        + (
            f", or `textwire broadcast resume {existing['id']}` to finish it"
            if existing["status"] in ("importing", "paused")
            else ""
        )
    )

"""Per-sender pacing shared by every worker: when each sender may next send.

A sender's row holds the epoch second its capacity is free again. Taking a
slot moves it forward by the message's cost (segments / the sender's rate);
a 429 from Twilio moves it to when Twilio said to come back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sqlalchemy import Connection, Table, bindparam, case, select, update

from .engine import Database
from .schema import RateLimit

__all__ = ["SqlRateLimits"]

_table = cast(Table, RateLimit.__table__)


class SqlRateLimits:
    """The ``rate_limits`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._ensure = (
            db.insert(_table)
            .values(key=bindparam("key"), next_at=bindparam("now"))
            .on_conflict_do_nothing(index_elements=["key"])
        )
        lock = select(_table.c.next_at).where(_table.c.key == bindparam("key"))
        self._lock = lock.with_for_update() if db.dialect == "postgresql" else lock
        # UPDATE parameters may not share a column's name (SQLAlchemy).
        self._set = (
            update(_table)
            .where(_table.c.key == bindparam("b_key"))
            .values(next_at=bindparam("b_next_at"))
        )

    def reserve(
        self, key: str, *, cost: float, now: float, max_wait: float
    ) -> tuple[bool, float]:
        """Take ``cost`` seconds of sender ``key``'s capacity, atomically.

        Returns ``(True, start)`` with the time this send may start (at most
        ``max_wait`` from ``now``), or ``(False, available)`` with the time the
        sender is free again when that is further away. Times are epoch seconds.
        """
        with self.db.begin() as conn:
            (slot,), free = self.take(conn, key, [cost], now=now, max_wait=max_wait)
        if slot is None:
            return False, free
        return True, slot

    def take(
        self,
        conn: Connection,
        key: str,
        costs: Sequence[float],
        *,
        now: float,
        max_wait: float,
    ) -> tuple[list[float | None], float]:
        """Slots for messages of ``costs`` from sender ``key``, in order, inside
        ``conn``'s transaction (the outbox claim's).

        Returns each message's start time, ``None`` from the first that would
        wait more than ``max_wait`` on (it stays queued), and the time the
        sender is free after the last slot taken.
        """
        conn.execute(self._ensure, {"key": key, "now": now})
        cursor = float(conn.execute(self._lock, {"key": key}).scalar_one())
        slots: list[float | None] = []
        taken = False
        for cost in costs:
            start = max(cursor, now)
            if start > now + max_wait or (slots and slots[-1] is None):
                slots.append(None)
                continue
            slots.append(start)
            cursor = start + cost
            taken = True
        if taken:
            conn.execute(self._set, {"b_key": key, "b_next_at": cursor})
        return slots, max(cursor, now)

    def slow_down(self, key: str, *, until: float) -> None:
        """Keep every worker off sender ``key`` until ``until`` (after a 429)."""
        later = case((_table.c.next_at > until, _table.c.next_at), else_=until)
        stmt = (
            self.db.insert(_table)
            .values(key=key, next_at=until)
            .on_conflict_do_update(index_elements=["key"], set_={"next_at": later})
        )
        with self.db.begin() as conn:
            conn.execute(stmt)

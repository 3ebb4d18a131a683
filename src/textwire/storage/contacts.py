"""Contacts: who the bot talks to, and whether they opted out (STOP)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, bindparam, select, update

from .engine import Database
from .schema import Contact

__all__ = ["SqlContacts"]

_table = cast(Table, Contact.__table__)


class SqlContacts:
    """The ``contacts`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._insert = (
            db.insert(_table)
            .values(
                phone=bindparam("phone"),
                opted_out=False,
                created_at=bindparam("now"),
                updated_at=bindparam("now"),
            )
            .on_conflict_do_nothing(index_elements=["phone"])
        )
        self._opted = select(_table.c.opted_out).where(
            _table.c.phone == bindparam("phone")
        )
        # UPDATE parameters may not share a column's name (SQLAlchemy).
        self._set = (
            update(_table)
            .where(_table.c.phone == bindparam("b_phone"))
            .values(
                opted_out=bindparam("b_opted_out"),
                opted_out_at=bindparam("b_opted_out_at"),
                updated_at=bindparam("now"),
            )
        )

    def ensure(self, conn: Connection, phone: str, now: datetime) -> bool:
        """Create the contact if new; return whether it has opted out."""
        conn.execute(self._insert, {"phone": phone, "now": now})
        return bool(conn.execute(self._opted, {"phone": phone}).scalar_one())

    def set_opt_out(
        self, conn: Connection, phone: str, opted_out: bool, now: datetime
    ) -> None:
        """Opt ``phone`` out (or back in), creating the contact if needed."""
        conn.execute(self._insert, {"phone": phone, "now": now})
        conn.execute(
            self._set,
            {
                "b_phone": phone,
                "b_opted_out": opted_out,
                "b_opted_out_at": now if opted_out else None,
                "now": now,
            },
        )

    def opted_out_among(self, phones: Sequence[str]) -> set[str]:
        """Which of ``phones`` have opted out."""
        if not phones:
            return set()
        with self.db.read() as conn:
            rows = conn.execute(OPTED_OUT_AMONG, {"b_phones": sorted(set(phones))})
            return set(rows.scalars())

    def all_opted_out(self) -> set[str]:
        """Every number that has opted out (a broadcast skips them)."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(_table.c.phone).where(_table.c.opted_out.is_(True))
            )
            return set(rows.scalars())

    def is_opted_out(self, phone: str) -> bool:
        with self.db.read() as conn:
            return bool(conn.execute(self._opted, {"phone": phone}).scalar())


OPTED_OUT_AMONG = select(_table.c.phone).where(
    _table.c.phone.in_(bindparam("b_phones", expanding=True)),
    _table.c.opted_out.is_(True),
)

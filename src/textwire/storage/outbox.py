"""The outbox: every outbound message, claimed by workers with leases.

A row is ``queued`` (due at ``next_attempt_at``), ``sending`` (a worker's,
until its lease runs out), ``unknown`` (the last attempt may have reached
Twilio: reconcile before sending again), or final: ``sent``, ``failed``,
``twiml`` (answered in the webhook's TwiML, never claimed).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Integer,
    Table,
    and_,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import aliased

from textwire import status as statuses
from textwire.errors import StorageError
from textwire.messages import segment_info

from .engine import Database, Prepared
from .messages import advance_status_values
from .ratelimits import SqlRateLimits
from .schema import Message, OutboxItem

__all__ = [
    "OPEN_OUTBOX",
    "TWIML_OUTBOX",
    "ClaimedItem",
    "NewMessage",
    "RatePlan",
    "SentResult",
    "SqlOutbox",
]

logger = logging.getLogger("textwire.storage")

# Outbox rows a worker may still claim (or that block later rows to the same
# phone); "sent", "failed" and "twiml" are final.
OPEN_OUTBOX = ("queued", "sending", "unknown")
# A reply answered in the webhook's TwiML: recorded, never claimed by a worker.
TWIML_OUTBOX = "twiml"

_messages = cast(Table, Message.__table__)
_outbox = cast(Table, OutboxItem.__table__)


@dataclasses.dataclass(frozen=True, slots=True)
class NewMessage:
    """One outbound message to write to the outbox."""

    to: str
    body: str
    media: tuple[str, ...]
    from_: str | None
    messaging_service_sid: str | None
    in_reply_to: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimedItem:
    """An outbox row a worker holds, with what it needs to send it.

    ``slot`` is the epoch second the send may start at, reserved against the
    sender's rate limit when the row was claimed (``None``: no pacing).
    """

    id: int
    message_id: int
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    media: tuple[str, ...]
    attempts: int
    reconcile: bool
    first_attempt_at: datetime | None
    created_at: datetime
    segments: int = 1
    slot: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SentResult:
    """What Twilio answered for a claimed row it accepted."""

    item: ClaimedItem
    sid: str
    status: str
    num_segments: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RatePlan:
    """How a claim paces senders: the cost of a row, and how far ahead a slot
    may be taken (rows further out stay queued until then)."""

    key: Callable[[str | None, str | None], str]
    cost: Callable[[str, int], float]
    max_wait: float


class SqlOutbox:
    """The ``outbox`` table (and the outbound rows of ``messages``)."""

    def __init__(self, db: Database, rates: SqlRateLimits) -> None:
        self.db = db
        self.rates = rates
        self._insert_message = (
            db.insert(_messages)
            .values(
                direction="outbound",
                from_number=bindparam("from_"),
                messaging_service_sid=bindparam("service"),
                to_number=bindparam("to"),
                body=bindparam("body"),
                media=bindparam("media", type_=_messages.c.media.type),
                num_segments=bindparam("segments"),
                encoding=bindparam("encoding"),
                status="pending",
                in_reply_to=bindparam("in_reply_to"),
                created_at=bindparam("now"),
                updated_at=bindparam("now"),
            )
            .returning(_messages.c.id)
        )
        self._insert_outbox = (
            db.insert(_outbox)
            .values(
                message_id=bindparam("message_id"),
                to_number=bindparam("to"),
                from_number=bindparam("from_"),
                messaging_service_sid=bindparam("service"),
                body=bindparam("body"),
                media=bindparam("media", type_=_outbox.c.media.type),
                segments=bindparam("segments"),
                status=bindparam("status"),
                attempts=0,
                reconcile=False,
                next_attempt_at=bindparam("due"),
                created_at=bindparam("now"),
                updated_at=bindparam("now"),
            )
            .returning(_outbox.c.id)
        )
        self._mark_sent_outbox = (
            update(_outbox)
            .where(
                _outbox.c.id == bindparam("item_id"),
                _outbox.c.claimed_by == bindparam("worker"),
                _outbox.c.status == "sending",
            )
            .values(
                status="sent",
                provider_sid=bindparam("b_sid"),
                lease_expires_at=None,
                updated_at=bindparam("now"),
            )
        )
        self._fast_sent_outbox = Prepared(self._mark_sent_outbox, db.engine)
        self._due_statements: dict[bool, Any] = {}
        self._sent_messages: dict[str, Prepared] = {}

    # -- writing -------------------------------------------------------------

    def enqueue(
        self,
        conn: Connection,
        *,
        to: str,
        body: str,
        media: Sequence[str],
        from_: str | None,
        messaging_service_sid: str | None,
        now: datetime,
        in_reply_to: int | None = None,
        deliver: bool = True,
        due: datetime | None = None,
    ) -> int:
        """Write one outbound message and its outbox row; return the outbox id.

        With ``deliver=False`` the message goes out some other way (in the
        webhook's TwiML): its outbox row is written already final, status
        ``twiml``, so no worker ever claims it, while status callbacks still
        find the message by the outbox id (``/twilio/status?outbox=N``).
        """
        info = segment_info(body)
        values: dict[str, Any] = {
            "to": to,
            "from_": from_,
            "service": messaging_service_sid,
            "body": body,
            "media": list(media),
            "segments": info.segments,
            "encoding": info.encoding,
            "in_reply_to": in_reply_to,
            "now": now,
        }
        message_id = conn.execute(self._insert_message, values).scalar_one()
        outbox_id: int = conn.execute(
            self._insert_outbox,
            {
                **values,
                "message_id": message_id,
                "status": "queued" if deliver else TWIML_OUTBOX,
                "due": due or now,
            },
        ).scalar_one()
        return outbox_id

    def enqueue_many(
        self,
        conn: Connection,
        messages: Sequence[NewMessage],
        *,
        now: datetime,
        deliver: bool = True,
    ) -> list[int]:
        """:meth:`enqueue` each of ``messages``, in order; their outbox ids."""
        return [
            self.enqueue(
                conn,
                to=m.to,
                body=m.body,
                media=m.media,
                from_=m.from_,
                messaging_service_sid=m.messaging_service_sid,
                now=now,
                in_reply_to=m.in_reply_to,
                deliver=deliver,
            )
            for m in messages
        ]

    # -- claiming ------------------------------------------------------------

    def claim(
        self,
        now: datetime,
        *,
        limit: int,
        worker_id: str,
        lease: timedelta,
        rates: RatePlan | None = None,
        only: Sequence[int] | None = None,
    ) -> list[ClaimedItem]:
        """Atomically take up to ``limit`` due rows for ``worker_id``.

        Due rows are queued ones whose time has come, ``unknown`` ones (to be
        reconciled), and ``sending`` ones whose worker's lease ran out. A row
        is skipped while an earlier row to the same number is still open, so
        the parts of a reply reach each phone in the order they were queued.

        With ``rates``, each row also gets its slot against its sender's rate
        limit in the same transaction; a row whose slot would be more than
        ``rates.max_wait`` away is not claimed but put off until its sender
        is free. ``only`` restricts the claim to those outbox ids
        (``textwire send`` waits on its own rows, nothing else).
        """
        with self.db.begin() as conn:
            candidates = conn.execute(*self._due(now, limit, only)).all()
            if not candidates:
                return []
            slots = self._slots(conn, candidates, now, rates)
            ids = [row.id for row in candidates if slots.get(row.id, 0.0) is not None]
            take = {
                "b_ids": ids,
                "b_now": now,
                "b_worker": worker_id,
                "b_lease_until": now + lease,
            }
            rows = conn.execute(_TAKE, take).all() if ids else []
        items = [
            ClaimedItem(
                id=r.id,
                message_id=r.message_id,
                to=r.to_number,
                from_=r.from_number,
                messaging_service_sid=r.messaging_service_sid,
                body=r.body,
                media=tuple(r.media or ()),
                attempts=r.attempts,
                reconcile=bool(r.reconcile),
                first_attempt_at=r.first_attempt_at,
                created_at=r.created_at,
                segments=r.segments or 1,
                slot=slots.get(r.id),
            )
            for r in rows
        ]
        items.sort(key=lambda item: item.id)
        return items

    def _due(self, now: datetime, limit: int, only: Sequence[int] | None) -> Any:
        """The claim's SELECT and its parameters: built once, for all rows or
        for given ids (``textwire send``)."""
        key = only is not None
        stmt = self._due_statements.get(key)
        if stmt is None:
            stmt = self._due_statements[key] = _due_statement(restricted=key)
        params: dict[str, Any] = {"b_now": now, "b_limit": limit}
        if only is not None:
            params["b_only"] = list(only)
        return stmt, params

    def _slots(
        self,
        conn: Connection,
        candidates: Sequence[Any],
        now: datetime,
        rates: RatePlan | None,
    ) -> dict[int, float | None]:
        """Reserve each candidate's rate-limit slot; put off the ones that
        would wait too long (``None``)."""
        if rates is None:
            return {}
        by_sender: dict[str, list[Any]] = defaultdict(list)
        for row in candidates:
            by_sender[rates.key(row.from_number, row.messaging_service_sid)].append(row)
        epoch = now.timestamp()
        slots: dict[int, float | None] = {}
        for key, rows in sorted(by_sender.items()):
            taken, free = self.rates.take(
                conn,
                key,
                [rates.cost(key, row.segments or 1) for row in rows],
                now=epoch,
                max_wait=rates.max_wait,
            )
            later = [
                row.id for row, slot in zip(rows, taken, strict=True) if slot is None
            ]
            slots.update((row.id, slot) for row, slot in zip(rows, taken, strict=True))
            if later:
                conn.execute(
                    update(OutboxItem)
                    .where(OutboxItem.id.in_(later))
                    .values(next_attempt_at=datetime.fromtimestamp(free, UTC))
                )
        return slots

    def renew_lease(
        self, item: ClaimedItem, worker_id: str, *, now: datetime, lease: timedelta
    ) -> bool:
        """Extend ``worker_id``'s lease on a row; False if the row is no longer its."""
        with self.db.begin() as conn:
            result = conn.execute(
                update(OutboxItem)
                .where(
                    OutboxItem.id == item.id,
                    OutboxItem.claimed_by == worker_id,
                    OutboxItem.status == "sending",
                )
                .values(lease_expires_at=now + lease, updated_at=now)
            )
            return result.rowcount == 1

    def defer(
        self, item: ClaimedItem, worker_id: str, *, until: datetime, now: datetime
    ) -> bool:
        """Put a claimed row back untouched, due at ``until`` (not an attempt)."""
        with self.db.begin() as conn:
            return self._finish(
                conn,
                item,
                worker_id,
                now,
                status="unknown" if item.reconcile else "queued",
                next_attempt_at=until,
                attempts=OutboxItem.attempts - 1,
            )

    # -- results -------------------------------------------------------------

    def _finish(
        self,
        conn: Connection,
        item: ClaimedItem,
        worker_id: str,
        now: datetime,
        **values: Any,
    ) -> bool:
        result = conn.execute(
            update(OutboxItem)
            .where(
                OutboxItem.id == item.id,
                OutboxItem.claimed_by == worker_id,
                OutboxItem.status == "sending",
            )
            .values(updated_at=now, lease_expires_at=None, **values)
        )
        if result.rowcount != 1:
            logger.warning(
                "outbox %s was taken over by another worker; result dropped", item.id
            )
            return False
        return True

    def mark_sent(
        self,
        item: ClaimedItem,
        worker_id: str,
        *,
        sid: str,
        status: str,
        num_segments: int | None,
        now: datetime,
    ) -> bool:
        """Record Twilio's SID and status: two prepared statements, one
        transaction (the status advances in the same UPDATE as the SID)."""
        sent = SentResult(item, sid, status, num_segments)
        return self.mark_sent_many([sent], worker_id, now=now) == [True]

    def mark_sent_many(
        self, results: Sequence[SentResult], worker_id: str, *, now: datetime
    ) -> list[bool]:
        """:meth:`mark_sent` for several rows in one transaction (the worker
        records the sends that finished together at once); for each, whether
        it was still this worker's (a row another worker took over is left
        alone)."""
        recorded: list[bool] = []
        with self.db.begin() as conn:
            for sent in results:
                values = {
                    "item_id": sent.item.id,
                    "worker": worker_id,
                    "b_sid": sent.sid,
                    "now": now,
                    "b_message_id": sent.item.message_id,
                    "b_segments": sent.num_segments or None,
                }
                if self._fast_sent_outbox.run(conn, values) != 1:
                    logger.warning(
                        "outbox %s was taken over by another worker; result dropped",
                        sent.item.id,
                    )
                    recorded.append(False)
                    continue
                self._sent_message(sent.status).run(conn, values)
                recorded.append(True)
        return recorded

    def _sent_message(self, status: str) -> Prepared:
        """The message's UPDATE for a send Twilio answered with ``status``
        (one prepared statement per status: the status is part of its SQL)."""
        known = status if statuses.rank(status) is not None else ""
        prepared = self._sent_messages.get(known)
        if prepared is None:
            values: dict[str, Any] = {
                "sid": bindparam("b_sid"),
                "sent_at": bindparam("now"),
                "updated_at": bindparam("now"),
                "num_segments": func.coalesce(
                    bindparam("b_segments", type_=Integer), _messages.c.num_segments
                ),
            }
            if known:
                values["status"] = advance_status_values(known)
            stmt = (
                update(_messages)
                .where(_messages.c.id == bindparam("b_message_id"))
                .values(**values)
            )
            prepared = self._sent_messages[known] = Prepared(stmt, self.db.engine)
        return prepared

    def mark_retry(
        self,
        item: ClaimedItem,
        worker_id: str,
        *,
        next_attempt_at: datetime,
        error: str,
        code: int | None,
        now: datetime,
        unknown: bool = False,
    ) -> bool:
        with self.db.begin() as conn:
            return self._finish(
                conn,
                item,
                worker_id,
                now,
                status="unknown" if unknown else "queued",
                next_attempt_at=next_attempt_at,
                last_error=error,
                last_error_code=code,
            )

    def mark_failed(
        self,
        item: ClaimedItem,
        worker_id: str,
        *,
        error: str,
        code: int | None,
        now: datetime,
    ) -> bool:
        with self.db.begin() as conn:
            if not self._finish(
                conn,
                item,
                worker_id,
                now,
                status="failed",
                last_error=error,
                last_error_code=code,
            ):
                return False
            conn.execute(
                update(Message)
                .where(Message.id == item.message_id)
                .values(
                    status="failed",
                    error_code=code,
                    error_message=error,
                    updated_at=now,
                )
            )
            return True

    # -- reading -------------------------------------------------------------

    def row(self, outbox_id: int) -> dict[str, Any] | None:
        """One outbox row with its message's delivery status, for people."""
        with self.db.read() as conn:
            row = conn.execute(
                select(
                    OutboxItem.id,
                    OutboxItem.status,
                    OutboxItem.attempts,
                    OutboxItem.provider_sid.label("sid"),
                    OutboxItem.last_error,
                    OutboxItem.last_error_code,
                    OutboxItem.next_attempt_at,
                    Message.status.label("message_status"),
                )
                .join(Message, Message.id == OutboxItem.message_id)
                .where(OutboxItem.id == outbox_id)
            ).first()
        return dict(row._mapping) if row is not None else None

    def depth(self) -> int:
        """Open rows: queued, being sent, or to reconcile."""
        with self.db.read() as conn:
            depth: int = conn.execute(
                select(func.count()).where(OutboxItem.status.in_(OPEN_OUTBOX))
            ).scalar_one()
        return depth

    def stats(self, now: datetime) -> tuple[int, datetime | None]:
        """Open outbox rows, and the earliest due time among those already due
        at ``now`` (``None`` when none is), in one query (for ``/metrics``).

        Raises:
            StorageError: the database did not answer.
        """
        due = case((OutboxItem.next_attempt_at <= now, OutboxItem.next_attempt_at))
        stmt = select(func.count(), func.min(due)).where(
            OutboxItem.status.in_(OPEN_OUTBOX)
        )
        try:
            with self.db.read() as conn:
                depth, oldest = conn.execute(stmt).one()
        except SQLAlchemyError as exc:
            raise StorageError(f"database error: {exc.__class__.__name__}") from exc
        return int(depth), oldest


def _due_statement(*, restricted: bool) -> Any:
    """Due rows, oldest first, skipping any behind an open earlier row to the
    same phone; locked for the claim (``SKIP LOCKED`` on PostgreSQL)."""
    earlier = aliased(OutboxItem)
    blocked = exists().where(
        earlier.to_number == OutboxItem.to_number,
        earlier.id < OutboxItem.id,
        earlier.status.in_(OPEN_OUTBOX),
    )
    now = bindparam("b_now", type_=_outbox.c.next_attempt_at.type)
    due = or_(
        and_(
            OutboxItem.status.in_(("queued", "unknown")),
            OutboxItem.next_attempt_at <= now,
        ),
        and_(OutboxItem.status == "sending", OutboxItem.lease_expires_at < now),
    )
    stmt = select(
        OutboxItem.id,
        OutboxItem.from_number,
        OutboxItem.messaging_service_sid,
        OutboxItem.segments,
    ).where(due, ~blocked)
    if restricted:
        stmt = stmt.where(OutboxItem.id.in_(bindparam("b_only", expanding=True)))
    return (
        stmt.order_by(OutboxItem.next_attempt_at, OutboxItem.id)
        .limit(bindparam("b_limit", type_=Integer))
        .with_for_update(skip_locked=True)
    )


_TAKE = (
    update(OutboxItem)
    .where(OutboxItem.id.in_(bindparam("b_ids", expanding=True)))
    .values(
        # A row that was "sending" or "unknown" may already be at Twilio.
        reconcile=case(
            (OutboxItem.status.in_(("sending", "unknown")), True),
            else_=False,
        ),
        status="sending",
        attempts=OutboxItem.attempts + 1,
        claimed_by=bindparam("b_worker"),
        lease_expires_at=bindparam(
            "b_lease_until", type_=_outbox.c.lease_expires_at.type
        ),
        first_attempt_at=func.coalesce(
            OutboxItem.first_attempt_at,
            bindparam("b_now", type_=_outbox.c.first_attempt_at.type),
        ),
        updated_at=bindparam("b_now", type_=_outbox.c.updated_at.type),
    )
    .returning(
        OutboxItem.id,
        OutboxItem.message_id,
        OutboxItem.to_number,
        OutboxItem.from_number,
        OutboxItem.messaging_service_sid,
        OutboxItem.body,
        OutboxItem.media,
        OutboxItem.attempts,
        OutboxItem.reconcile,
        OutboxItem.first_attempt_at,
        OutboxItem.created_at,
        OutboxItem.segments,
    )
)
"""The claim's UPDATE: the chosen rows become this worker's, for its lease."""

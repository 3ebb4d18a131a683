"""The outbox: every outbound message, claimed by workers with leases.

A row is ``queued`` (due at ``next_attempt_at``, never before its
``send_at``), ``sending`` (a worker's, until its lease runs out), ``unknown``
(the last attempt may have reached Twilio: reconcile before sending again),
or final: ``sent``, ``failed``, ``cancelled`` (cancelled while it waited),
``twiml`` (answered in the webhook's TwiML, never claimed).

Due rows are claimed by priority (replies before a broadcast's bulk rows),
then by due time. A row with quiet hours is held while its recipient's local
time is inside them; a broadcast's rows are claimed only while it is sending.
"""

from __future__ import annotations

import dataclasses
import functools
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
from textwire.quiet import QuietHours, zones_for_number

from .contacts import OPTED_OUT_AMONG
from .engine import Database, Prepared
from .messages import advance_status_values
from .ratelimits import SqlRateLimits
from .schema import PRIORITY_BULK, PRIORITY_NORMAL, Broadcast, Message, OutboxItem

__all__ = [
    "CANCELLED",
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
# A row cancelled before it was sent (``SqlOutbox.cancel``): final.
CANCELLED = "cancelled"

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
    # Scheduled: never sent before (aware UTC). None: as soon as possible.
    send_at: datetime | None = None
    priority: int = PRIORITY_NORMAL
    broadcast_id: int | None = None
    # "21:00-09:00": held while the recipient's local time is inside it.
    quiet_hours: str | None = None
    # The recipient's IANA zone when known better than from the number.
    time_zone: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimedItem:
    """An outbox row a worker holds, with what it needs to send it.

    ``slot`` is the epoch second the send may start at, reserved against the
    sender's rate limit when the row was claimed (``None``: no pacing).
    ``opted_out``: the recipient had opted out when the row was claimed.
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
    priority: int = PRIORITY_NORMAL
    broadcast_id: int | None = None
    opted_out: bool = False


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
    may be taken (rows further out stay queued until then).

    ``bulk_max_wait`` (``None``: ``max_wait``) is how far ahead a bulk row may
    take a slot: kept short, so a reply queued behind a broadcast finds the
    sender's next slot close."""

    key: Callable[[str | None, str | None], str]
    cost: Callable[[str, int], float]
    max_wait: float
    bulk_max_wait: float | None = None


# -- what the claim asks of a row (kept apart: the claim's query is tuned) -------


def _time_has_come(now: Any) -> Any:
    return and_(
        OutboxItem.next_attempt_at <= now,
        or_(OutboxItem.send_at.is_(None), OutboxItem.send_at <= now),
    )


def _is_due_queued(now: Any) -> Any:
    """Queued rows whose time (and send time) has come: read in the order of
    the ``(status, priority, next_attempt_at, id)`` index."""
    return and_(OutboxItem.status == "queued", _time_has_come(now))


def _is_due_again(now: Any) -> Any:
    """Unknown rows (to reconcile) whose time has come; ``sending`` ones whose
    worker's lease ran out."""
    return or_(
        and_(OutboxItem.status == "unknown", _time_has_come(now)),
        and_(OutboxItem.status == "sending", OutboxItem.lease_expires_at < now),
    )


def _blocked(now: Any) -> Any:
    """An earlier open row of the same priority to the same number, due (not
    one scheduled for later or held for quiet hours): this row waits for it."""
    earlier = aliased(OutboxItem)
    return exists().where(
        earlier.to_number == OutboxItem.to_number,
        earlier.id < OutboxItem.id,
        earlier.status.in_(OPEN_OUTBOX),
        earlier.priority == OutboxItem.priority,
        or_(earlier.send_at.is_(None), earlier.send_at <= now),
        or_(earlier.held_until.is_(None), earlier.held_until <= now),
    )


def _broadcast_allows() -> Any:
    """Rows of no broadcast, or of one that is sending; a row already in
    flight (``sending``, ``unknown``) is finished even when its broadcast
    was paused or cancelled, since it may be at Twilio already."""
    return or_(
        OutboxItem.broadcast_id.is_(None),
        OutboxItem.status.in_(("sending", "unknown")),
        exists().where(
            Broadcast.id == OutboxItem.broadcast_id, Broadcast.status == "sending"
        ),
    )


def _count(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _requeued() -> Any:
    """``queued`` again, unless the row's broadcast was cancelled meanwhile."""
    cancelled = exists().where(
        Broadcast.id == OutboxItem.broadcast_id, Broadcast.status == "cancelled"
    )
    return case((cancelled, CANCELLED), else_="queued")


@functools.lru_cache(maxsize=64)
def _quiet(window: str) -> QuietHours:
    return QuietHours.parse(window)


def _message_values(m: NewMessage, now: datetime) -> dict[str, Any]:
    """The bound values of one new message and its outbox row."""
    info = segment_info(m.body)
    return {
        "to": m.to,
        "from_": m.from_,
        "service": m.messaging_service_sid,
        "body": m.body,
        "media": list(m.media),
        "segments": info.segments,
        "encoding": info.encoding,
        "in_reply_to": m.in_reply_to,
        "now": now,
        "send_at": m.send_at,
        "priority": m.priority,
        "broadcast_id": m.broadcast_id,
        "quiet_hours": m.quiet_hours,
        "time_zone": m.time_zone,
    }


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
                send_at=bindparam("send_at", type_=_outbox.c.send_at.type),
                priority=bindparam("priority"),
                broadcast_id=bindparam(
                    "broadcast_id", type_=_outbox.c.broadcast_id.type
                ),
                quiet_hours=bindparam("quiet_hours", type_=_outbox.c.quiet_hours.type),
                time_zone=bindparam("time_zone", type_=_outbox.c.time_zone.type),
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
        self._due_statements: dict[tuple[bool, bool, bool], Any] = {}
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
        send_at: datetime | None = None,
        priority: int = PRIORITY_NORMAL,
        broadcast_id: int | None = None,
        quiet_hours: str | None = None,
        time_zone: str | None = None,
    ) -> int:
        """Write one outbound message and its outbox row; return the outbox id.

        With ``deliver=False`` the message goes out some other way (in the
        webhook's TwiML): its outbox row is written already final, status
        ``twiml``, so no worker ever claims it, while status callbacks still
        find the message by the outbox id (``/twilio/status?outbox=N``).

        With ``send_at`` it is a scheduled message: no worker sends it before
        then. ``quiet_hours`` (``"21:00-09:00"``) holds it while that is the
        recipient's local time; ``priority`` (``PRIORITY_BULK``) lets normal
        rows (replies) go first; ``broadcast_id`` links it to its broadcast.
        """
        message = NewMessage(
            to=to,
            body=body,
            media=tuple(media),
            from_=from_,
            messaging_service_sid=messaging_service_sid,
            in_reply_to=in_reply_to,
            send_at=send_at,
            priority=priority,
            broadcast_id=broadcast_id,
            quiet_hours=quiet_hours,
            time_zone=time_zone,
        )
        values = _message_values(message, now)
        message_id = conn.execute(self._insert_message, values).scalar_one()
        outbox_id: int = conn.execute(
            self._insert_outbox,
            {
                **values,
                "message_id": message_id,
                "status": "queued" if deliver else TWIML_OUTBOX,
                "due": send_at or due or now,
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
                send_at=m.send_at,
                priority=m.priority,
                broadcast_id=m.broadcast_id,
                quiet_hours=m.quiet_hours,
                time_zone=m.time_zone,
            )
            for m in messages
        ]

    def enqueue_batch(
        self, conn: Connection, messages: Sequence[NewMessage], *, now: datetime
    ) -> int:
        """Queue many messages with two statements (a broadcast's import):
        the messages, then their outbox rows; how many were queued.

        The same rows :meth:`enqueue_many` writes, without a round trip per
        row: one multi-row INSERT … RETURNING each, ids in input order.
        """
        if not messages:
            return 0
        values = [_message_values(m, now) for m in messages]
        ids = conn.execute(
            _messages.insert().returning(_messages.c.id, sort_by_parameter_order=True),
            [
                {
                    "direction": "outbound",
                    "status": "pending",
                    "created_at": now,
                    "updated_at": now,
                    "from_number": v["from_"],
                    "messaging_service_sid": v["service"],
                    "to_number": v["to"],
                    "body": v["body"],
                    "media": v["media"],
                    "num_segments": v["segments"],
                    "encoding": v["encoding"],
                    "in_reply_to": v["in_reply_to"],
                }
                for v in values
            ],
        ).scalars()
        rows = []
        for message_id, v in zip(ids, values, strict=True):
            rows.append(
                {
                    "status": "queued",
                    "attempts": 0,
                    "reconcile": False,
                    "created_at": now,
                    "updated_at": now,
                    "message_id": message_id,
                    "to_number": v["to"],
                    "from_number": v["from_"],
                    "messaging_service_sid": v["service"],
                    "body": v["body"],
                    "media": v["media"],
                    "segments": v["segments"],
                    "next_attempt_at": v["send_at"] or now,
                    "send_at": v["send_at"],
                    "priority": v["priority"],
                    "broadcast_id": v["broadcast_id"],
                    "quiet_hours": v["quiet_hours"],
                    "time_zone": v["time_zone"],
                }
            )
        conn.execute(_outbox.insert(), rows)
        return len(rows)

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
        broadcast: int | None = None,
    ) -> list[ClaimedItem]:
        """Atomically take up to ``limit`` due rows for ``worker_id``.

        Due rows are queued ones whose time has come (never before their
        ``send_at``), ``unknown`` ones (to be reconciled), and ``sending``
        ones whose worker's lease ran out; normal rows (replies) before bulk
        ones (broadcasts), then by due time. A row is skipped while an
        earlier row of its priority to the same number is still open and
        due, so the parts of a reply reach each phone in the order they were
        queued (a reminder scheduled for tomorrow holds up nothing). A
        broadcast's queued rows are claimed only while it is ``sending``.

        A row with quiet hours whose recipient's local time is inside them
        is not claimed but held (``held_until``) until they end. With
        ``rates``, each row also gets its slot against its sender's rate
        limit in the same transaction; a row whose slot would be more than
        ``rates.max_wait`` away (``bulk_max_wait`` for bulk rows) is not
        claimed but put off until its sender is free. ``only`` restricts the
        claim to those outbox ids (``textwire send`` waits on its own rows,
        nothing else), ``broadcast`` to that broadcast's rows.
        """
        with self.db.begin() as conn:
            candidates = self._candidates(conn, now, limit, only, broadcast)
            if not candidates:
                return []
            candidates = self._hold_quiet(conn, candidates, now)
            slots = self._slots(conn, candidates, now, rates)
            ids = [row.id for row in candidates if slots.get(row.id, 0.0) is not None]
            take = {
                "b_ids": ids,
                "b_now": now,
                "b_worker": worker_id,
                "b_lease_until": now + lease,
            }
            rows = conn.execute(_TAKE, take).all() if ids else []
            # (in the claim's transaction: a read of its own cost as much)
            phones = sorted({r.to_number for r in rows})
            opted_out = (
                set(conn.execute(OPTED_OUT_AMONG, {"b_phones": phones}).scalars())
                if phones
                else set()
            )
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
                priority=r.priority,
                broadcast_id=r.broadcast_id,
                opted_out=r.to_number in opted_out,
            )
            for r in rows
        ]
        items.sort(key=lambda item: (item.priority, item.id))
        return items

    def _candidates(
        self,
        conn: Connection,
        now: datetime,
        limit: int,
        only: Sequence[int] | None,
        broadcast: int | None,
    ) -> list[Any]:
        """Due rows, locked: first the few to retry or take over (``unknown``,
        expired ``sending``), then queued ones. Two queries, so the queued
        ones come from an ordered index scan that stops at ``limit`` rather
        than sorting a broadcast's whole backlog at every claim."""
        retries = conn.execute(
            *self._due(now, limit, only, broadcast, fresh=False)
        ).all()
        room = limit - len(retries)
        if room <= 0:
            return list(retries)
        fresh = conn.execute(*self._due(now, room, only, broadcast, fresh=True)).all()
        return [*retries, *fresh]

    def _due(
        self,
        now: datetime,
        limit: int,
        only: Sequence[int] | None,
        broadcast: int | None = None,
        *,
        fresh: bool,
    ) -> tuple[Any, dict[str, Any]]:
        """One of the claim's SELECTs and its parameters; each shape built
        once (a claim runs for every batch: building and caching a statement
        each time cost more than running it)."""
        key = (fresh, only is not None, broadcast is not None)
        stmt = self._due_statements.get(key)
        if stmt is None:
            stmt = self._due_statements[key] = _due_statement(*key)
        params: dict[str, Any] = {"b_now": now, "b_limit": limit}
        if only is not None:
            params["b_only"] = list(only)
        if broadcast is not None:
            params["b_broadcast"] = broadcast
        return stmt, params

    def _hold_quiet(
        self, conn: Connection, candidates: Sequence[Any], now: datetime
    ) -> list[Any]:
        """Hold the candidates whose recipient is inside their quiet hours
        (due again when they end); the rest, to claim."""
        free: list[Any] = []
        held: dict[datetime, list[int]] = defaultdict(list)
        for row in candidates:
            if row.quiet_hours is None:
                free.append(row)
                continue
            zones = (
                (row.time_zone,) if row.time_zone else zones_for_number(row.to_number)
            )
            until = _quiet(row.quiet_hours).next_allowed(now, zones)
            if until > now:
                held[until].append(row.id)
            else:
                free.append(row)
        for until, ids in held.items():
            conn.execute(
                update(OutboxItem)
                .where(OutboxItem.id.in_(ids))
                .values(held_until=until, next_attempt_at=until)
            )
        return free

    def _slots(
        self,
        conn: Connection,
        candidates: Sequence[Any],
        now: datetime,
        rates: RatePlan | None,
    ) -> dict[int, float | None]:
        """Reserve each candidate's rate-limit slot; put off the ones that
        would wait too long (``None``). Normal rows take their slots first."""
        if rates is None:
            return {}
        by_sender: dict[str, list[Any]] = defaultdict(list)
        for row in candidates:
            by_sender[rates.key(row.from_number, row.messaging_service_sid)].append(row)
        epoch = now.timestamp()
        slots: dict[int, float | None] = {}
        for key, rows in sorted(by_sender.items()):
            normal = [row for row in rows if row.priority < PRIORITY_BULK]
            bulk = [row for row in rows if row.priority >= PRIORITY_BULK]
            bulk_wait = (
                rates.max_wait
                if rates.bulk_max_wait is None
                else min(rates.max_wait, rates.bulk_max_wait)
            )
            for group, max_wait in ((normal, rates.max_wait), (bulk, bulk_wait)):
                if group:
                    slots.update(
                        self._take_slots(conn, rates, key, group, epoch, max_wait)
                    )
        return slots

    def _take_slots(
        self,
        conn: Connection,
        rates: RatePlan,
        key: str,
        rows: Sequence[Any],
        epoch: float,
        max_wait: float,
    ) -> dict[int, float | None]:
        taken, free = self.rates.take(
            conn,
            key,
            [rates.cost(key, row.segments or 1) for row in rows],
            now=epoch,
            max_wait=max_wait,
        )
        later = [row.id for row, slot in zip(rows, taken, strict=True) if slot is None]
        if later:
            conn.execute(
                update(OutboxItem)
                .where(OutboxItem.id.in_(later))
                .values(next_attempt_at=datetime.fromtimestamp(free, UTC))
            )
        return {row.id: slot for row, slot in zip(rows, taken, strict=True)}

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
                status="unknown" if unknown else _requeued(),
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

    # -- cancelling ------------------------------------------------------------

    def cancel(self, ids: Sequence[int], *, now: datetime) -> dict[int, str | None]:
        """Cancel the rows of ``ids`` that still wait (``queued``); each id's
        status afterwards (``cancelled``, or what it was: ``sent``,
        ``sending`` …), ``None`` for an id there is no row of.

        A row being sent, or that may have reached Twilio (``unknown``), is
        not cancelled: it may be on its way already.
        """
        wanted = list(dict.fromkeys(ids))
        with self.db.begin() as conn:
            self._cancel(conn, OutboxItem.id.in_(wanted), now)
            rows = conn.execute(
                select(OutboxItem.id, OutboxItem.status).where(
                    OutboxItem.id.in_(wanted)
                )
            )
            found = {int(r.id): str(r.status) for r in rows}
        return {i: found.get(i) for i in wanted}

    def cancel_broadcast(self, broadcast_id: int, *, now: datetime) -> int:
        """Cancel every row of a broadcast that still waits; how many."""
        with self.db.begin() as conn:
            return self._cancel(conn, OutboxItem.broadcast_id == broadcast_id, now)

    def _cancel(self, conn: Connection, which: Any, now: datetime) -> int:
        # The outbox rows first, then their messages: the order mark_sent
        # locks them in.
        done = conn.execute(
            update(OutboxItem)
            .where(which, OutboxItem.status == "queued")
            .values(status=CANCELLED, lease_expires_at=None, updated_at=now)
        )
        if done.rowcount:
            conn.execute(
                update(Message)
                .where(
                    Message.id.in_(
                        select(OutboxItem.message_id).where(
                            which, OutboxItem.status == CANCELLED
                        )
                    )
                )
                .values(status=advance_status_values("canceled"), updated_at=now)
            )
        return int(done.rowcount or 0)

    # -- reading -------------------------------------------------------------

    def scheduled(
        self, now: datetime, *, finished: bool = False, limit: int = 200
    ) -> list[dict[str, Any]]:
        """Scheduled messages (a ``send_at``, no broadcast), soonest first:
        the ones still to send, or with ``finished`` every one."""
        stmt = (
            select(
                OutboxItem.id,
                OutboxItem.to_number.label("to"),
                OutboxItem.send_at,
                OutboxItem.held_until,
                OutboxItem.status,
                OutboxItem.body,
                OutboxItem.media,
                OutboxItem.provider_sid.label("sid"),
                OutboxItem.last_error,
                OutboxItem.updated_at,
            )
            .where(OutboxItem.send_at.is_not(None), OutboxItem.broadcast_id.is_(None))
            .order_by(OutboxItem.send_at, OutboxItem.id)
            .limit(limit)
        )
        if not finished:
            stmt = stmt.where(OutboxItem.status.in_(OPEN_OUTBOX))
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def waiting_for(self, phone: str, now: datetime) -> list[dict[str, Any]]:
        """Rows to ``phone`` that wait for a later time: scheduled, or held
        for quiet hours (the sandbox's phone page shows them)."""
        later = or_(OutboxItem.send_at > now, OutboxItem.held_until > now)
        stmt = (
            select(
                OutboxItem.id,
                OutboxItem.body,
                OutboxItem.media,
                OutboxItem.from_number.label("from_"),
                func.coalesce(OutboxItem.held_until, OutboxItem.send_at).label(
                    "send_at"
                ),
                OutboxItem.held_until,
            )
            .where(
                OutboxItem.to_number == phone,
                OutboxItem.status == "queued",
                later,
            )
            .order_by(OutboxItem.id)
        )
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def waiting_counts(self, now: datetime) -> dict[str, int]:
        """Open rows that are ``scheduled`` (their send time ahead), ``held``
        (for quiet hours) and ``bulk`` (a broadcast's), in one query."""
        queued = OutboxItem.status == "queued"
        stmt = select(
            _count(and_(queued, OutboxItem.send_at > now)),
            _count(and_(queued, OutboxItem.held_until > now)),
            _count(OutboxItem.priority >= PRIORITY_BULK),
        ).where(OutboxItem.status.in_(OPEN_OUTBOX))
        try:
            with self.db.read() as conn:
                scheduled, held, bulk = conn.execute(stmt).one()
        except SQLAlchemyError as exc:
            raise StorageError(f"database error: {exc.__class__.__name__}") from exc
        return {"scheduled": int(scheduled), "held": int(held), "bulk": int(bulk)}

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


def _due_statement(fresh: bool, restricted: bool, one_broadcast: bool) -> Any:
    """The claim's SELECT: queued rows due (``fresh``), or rows to retry or
    take over; not blocked by an earlier row to the same phone; of no
    broadcast or one that is sending; normal priority before bulk, then by due
    time; locked for the claim (``SKIP LOCKED`` on PostgreSQL)."""
    now = bindparam("b_now", type_=_outbox.c.next_attempt_at.type)
    stmt = select(
        OutboxItem.id,
        OutboxItem.from_number,
        OutboxItem.messaging_service_sid,
        OutboxItem.segments,
        OutboxItem.priority,
        OutboxItem.to_number,
        OutboxItem.quiet_hours,
        OutboxItem.time_zone,
    ).where(
        _is_due_queued(now) if fresh else _is_due_again(now),
        ~_blocked(now),
        _broadcast_allows(),
    )
    if restricted:
        stmt = stmt.where(OutboxItem.id.in_(bindparam("b_only", expanding=True)))
    if one_broadcast:
        stmt = stmt.where(OutboxItem.broadcast_id == bindparam("b_broadcast"))
    return (
        stmt.order_by(OutboxItem.priority, OutboxItem.next_attempt_at, OutboxItem.id)
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
        OutboxItem.priority,
        OutboxItem.broadcast_id,
    )
)
"""The claim's UPDATE: the chosen rows become this worker's, for its lease."""

"""What the operator console reads and does in the database.

Conversations (contacts with their last message, unread count, opt-out and
handoff state), one conversation's messages with their delivery state, the
outbox rows that need a person, and the operator's actions: hand a contact
to a person or back, mark a conversation read, retry a failed row, cancel a
queued one. The outbox's own functions are left alone: a retry puts the row
back as ``unknown``, so the send worker reconciles it against Twilio's
message list before it sends anything (never a blind resend).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Table,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)

from textwire.handoff import HandoffChange, HandoffState

from .contacts import SqlContacts
from .engine import Database
from .outbox import CANCELLED, OPEN_OUTBOX, SqlOutbox
from .schema import Broadcast, Contact, Message, OutboxItem, RateLimit

__all__ = [
    "CANCELLED",
    "Conversation",
    "ContactInfo",
    "OutboxEntry",
    "SqlConsole",
    "ThreadMessage",
    "apply_handoff",
]

"""Outbox status of a row an operator cancelled before it was sent (final)."""

# How many of the newest messages one pass of the conversation list reads
# to find the contacts they belong to, and at most how many passes.
_SCAN_BATCH = 2000
_SCAN_PASSES = 10

_messages = cast(Table, Message.__table__)
_contacts = cast(Table, Contact.__table__)
_outbox = cast(Table, OutboxItem.__table__)
_rates = cast(Table, RateLimit.__table__)
_broadcasts = cast(Table, Broadcast.__table__)


@dataclasses.dataclass(frozen=True, slots=True)
class ContactInfo:
    """A contact as the console shows it."""

    id: int
    phone: str
    opted_out: bool
    handoff: HandoffState | None
    read_message_id: int | None
    updated_at: datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Conversation:
    """One row of the conversation list.

    Attributes:
        contact: who.
        last: their conversation's newest message (``None``: none yet).
        unread: inbound messages newer than what an operator has seen.
        waiting: with a person, and the contact spoke last.
        matched: for a search by text, the newest message that matched.
    """

    contact: ContactInfo
    last: ThreadMessage | None
    unread: int
    waiting: bool
    matched: ThreadMessage | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ThreadMessage:
    """A message in a conversation, with its outbox row when it has one."""

    id: int
    direction: str
    body: str
    media: tuple[dict[str, Any], ...]
    status: str
    error_code: int | None
    num_segments: int | None
    encoding: str | None
    created_at: datetime
    sent_by: str | None
    sid: str | None
    outbox_id: int | None = None
    outbox_status: str | None = None
    attempts: int = 0
    last_error: str | None = None
    last_error_code: int | None = None
    next_attempt_at: datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxEntry:
    """An outbox row for the console's outbox page."""

    id: int
    message_id: int
    to: str
    contact_id: int | None
    body: str
    media_count: int
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    last_error_code: int | None
    created_at: datetime
    updated_at: datetime
    sent_by: str | None
    held_behind: int | None = None


def apply_handoff(
    conn: Connection,
    contacts: SqlContacts,
    phone: str,
    change: HandoffChange,
    now: datetime,
) -> None:
    """Hand ``phone`` to a person or back to the bot, inside ``conn``'s
    transaction (creating the contact if needed). A handoff of a contact
    already with a person keeps its start and takes the new note."""
    contacts.ensure(conn, phone, now)
    if change.active:
        values: dict[str, Any] = {
            "handoff_at": func.coalesce(_contacts.c.handoff_at, now),
            "handoff_active_at": now,
            "handoff_note": change.note or None,
            "handoff_by": change.by[:128],
        }
    else:
        values = {
            "handoff_at": None,
            "handoff_active_at": None,
            "handoff_note": None,
            "handoff_by": None,
        }
    conn.execute(
        update(_contacts)
        .where(_contacts.c.phone == phone)
        .values(updated_at=now, **values)
    )


def handoff_of(row: Any) -> HandoffState | None:
    """The handoff a row with ``handoff_*`` columns describes."""
    if row.handoff_at is None:
        return None
    return HandoffState(
        since=row.handoff_at,
        active_at=row.handoff_active_at or row.handoff_at,
        note=row.handoff_note or "",
        by=row.handoff_by or "bot",
    )


def _contact(row: Any) -> ContactInfo:
    return ContactInfo(
        id=row.id,
        phone=row.phone,
        opted_out=bool(row.opted_out),
        handoff=handoff_of(row),
        read_message_id=row.read_message_id,
        updated_at=row.updated_at,
    )


def _like(text: str) -> str:
    """``text`` as a LIKE pattern matching it anywhere (``\\`` escapes)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def _of_phone(phone: Any) -> Any:
    """Messages of the conversation with ``phone`` (a bind or a column)."""
    return or_(
        and_(_messages.c.direction == "inbound", _messages.c.from_number == phone),
        and_(_messages.c.direction == "outbound", _messages.c.to_number == phone),
    )


class SqlConsole:
    """The console's reads and the operator's writes."""

    def __init__(self, db: Database, contacts: SqlContacts, outbox: SqlOutbox) -> None:
        self.db = db
        self.contacts = contacts
        self._outbox = outbox

    # -- contacts ------------------------------------------------------------

    def contact(self, contact_id: int) -> ContactInfo | None:
        with self.db.read() as conn:
            row = conn.execute(
                select(*_contacts.c).where(_contacts.c.id == contact_id)
            ).first()
        return _contact(row) if row is not None else None

    def contact_by_phone(self, phone: str, now: datetime) -> ContactInfo:
        """The contact with ``phone``, created if new."""
        with self.db.begin() as conn:
            self.contacts.ensure(conn, phone, now)
            row = conn.execute(
                select(*_contacts.c).where(_contacts.c.phone == phone)
            ).one()
        return _contact(row)

    def set_handoff(self, phone: str, change: HandoffChange, now: datetime) -> None:
        """Hand ``phone`` to a person or back to the bot (the console's button)."""
        with self.db.begin() as conn:
            apply_handoff(conn, self.contacts, phone, change, now)

    def touch_handoff(self, conn: Connection, phone: str, now: datetime) -> None:
        """A person replied: the handoff's timeout starts again from ``now``."""
        conn.execute(
            update(_contacts)
            .where(_contacts.c.phone == phone, _contacts.c.handoff_at.is_not(None))
            .values(handoff_active_at=now, updated_at=now)
        )

    def mark_read(self, contact_id: int, message_id: int) -> None:
        """An operator has seen the conversation up to ``message_id``."""
        with self.db.begin() as conn:
            conn.execute(
                update(_contacts)
                .where(
                    _contacts.c.id == contact_id,
                    or_(
                        _contacts.c.read_message_id.is_(None),
                        _contacts.c.read_message_id < message_id,
                    ),
                )
                .values(read_message_id=message_id)
            )

    def mark_sent_by(
        self, conn: Connection, outbox_ids: Sequence[int], operator: str
    ) -> None:
        """Record the operator who wrote the messages of ``outbox_ids``."""
        if not outbox_ids:
            return
        conn.execute(
            update(_messages)
            .where(
                _messages.c.id.in_(
                    select(_outbox.c.message_id).where(_outbox.c.id.in_(outbox_ids))
                )
            )
            .values(sent_by=operator[:128])
        )

    def bot_number_for(self, phone: str) -> str | None:
        """The number ``phone`` last texted (the one a reply comes from)."""
        with self.db.read() as conn:
            number: str | None = conn.execute(
                select(_messages.c.to_number)
                .where(
                    _messages.c.direction == "inbound",
                    _messages.c.from_number == phone,
                )
                .order_by(_messages.c.id.desc())
                .limit(1)
            ).scalar_one_or_none()
        return number

    # -- the conversation list -----------------------------------------------

    def conversations(
        self,
        now: datetime,
        *,
        limit: int = 50,
        phones: Sequence[str] | None = None,
        digits: str | None = None,
        text: str | None = None,
    ) -> list[Conversation]:
        """The conversation list, newest activity first; contacts with a
        person on top.

        Args:
            phones: only these numbers (a search by a whole number).
            digits: only numbers containing these digits.
            text: only conversations with a message containing this text
                (case-insensitive); ``matched`` is the newest such message.
        """
        matched: dict[str, int] = {}
        with self.db.read() as conn:
            if phones is not None:
                order = list(dict.fromkeys(phones))
            elif digits is not None:
                order = self._by_digits(conn, digits, limit)
            elif text is not None:
                matched = self._matching(conn, text, limit)
                order = list(matched)
            else:
                order = self._recent(conn, limit)
        order = order[:limit]
        return self._summaries(order, now, matched)

    def _recent(self, conn: Connection, limit: int) -> list[str]:
        """Contacts with a person, then the ones of the newest messages.

        Reads the newest messages by id (the primary key), a batch at a
        time, instead of grouping the whole table: cheap however long the
        history.
        """
        order: dict[str, None] = dict.fromkeys(
            conn.execute(
                select(_contacts.c.phone)
                .where(_contacts.c.handoff_at.is_not(None))
                .order_by(_contacts.c.handoff_at.desc())
                .limit(limit)
            ).scalars()
        )
        before: int | None = None
        for _ in range(_SCAN_PASSES):
            stmt = select(
                _messages.c.id,
                _messages.c.direction,
                _messages.c.from_number,
                _messages.c.to_number,
            ).order_by(_messages.c.id.desc())
            if before is not None:
                stmt = stmt.where(_messages.c.id < before)
            rows = conn.execute(stmt.limit(_SCAN_BATCH)).all()
            for row in rows:
                phone = row.from_number if row.direction == "inbound" else row.to_number
                if phone:
                    order.setdefault(phone, None)
            if len(order) >= limit or len(rows) < _SCAN_BATCH:
                break
            before = rows[-1].id
        return list(order)

    def _by_digits(self, conn: Connection, digits: str, limit: int) -> list[str]:
        """Numbers containing ``digits``: contacts, and senders of messages not
        handled yet (their contact row comes with the handling)."""
        pattern = f"%{''.join(ch for ch in digits if ch.isdigit())}%"
        found = dict.fromkeys(
            conn.execute(
                select(_contacts.c.phone)
                .where(_contacts.c.phone.like(pattern))
                .order_by(_contacts.c.updated_at.desc())
                .limit(limit)
            ).scalars()
        )
        found.update(
            dict.fromkeys(
                conn.execute(
                    select(_messages.c.from_number)
                    .where(
                        _messages.c.direction == "inbound",
                        _messages.c.from_number.like(pattern),
                    )
                    .distinct()
                    .limit(limit)
                ).scalars()
            )
        )
        return [phone for phone in found if phone][:limit]

    def _matching(self, conn: Connection, text: str, limit: int) -> dict[str, int]:
        """Contact → newest message id, of messages whose body has ``text``."""
        rows = conn.execute(
            select(
                _messages.c.id,
                _messages.c.direction,
                _messages.c.from_number,
                _messages.c.to_number,
            )
            .where(func.lower(_messages.c.body).like(_like(text), escape="\\"))
            .order_by(_messages.c.id.desc())
            .limit(limit * 20)
        ).all()
        found: dict[str, int] = {}
        for row in rows:
            phone = row.from_number if row.direction == "inbound" else row.to_number
            if phone and phone not in found:
                found[phone] = row.id
        return found

    def _summaries(
        self, phones: Sequence[str], now: datetime, matched: dict[str, int]
    ) -> list[Conversation]:
        if not phones:
            return []
        contacts = self._contacts_of(phones)
        missing = [phone for phone in phones if phone not in contacts]
        if missing:
            # A message recorded but not handled yet has no contact row yet:
            # written only then (the list is read far more often than that).
            with self.db.begin() as conn:
                for phone in missing:
                    self.contacts.ensure(conn, phone, now)
            contacts.update(self._contacts_of(missing))
        with self.db.read() as conn:
            last = self._last_messages(conn, phones)
            unread = self._unread(conn, phones)
            hits = self._messages_by_id(conn, list(matched.values()))
        result = [
            Conversation(
                contact=contacts[phone],
                last=last.get(phone),
                unread=unread.get(phone, 0),
                waiting=contacts[phone].handoff is not None
                and (last.get(phone) is None or last[phone].direction == "inbound"),
                matched=hits.get(matched[phone]) if phone in matched else None,
            )
            for phone in phones
            if phone in contacts
        ]
        result.sort(key=lambda c: (not c.waiting, c.contact.handoff is None))
        return result

    def _contacts_of(self, phones: Sequence[str]) -> dict[str, ContactInfo]:
        with self.db.read() as conn:
            return {
                row.phone: _contact(row)
                for row in conn.execute(
                    select(*_contacts.c).where(_contacts.c.phone.in_(list(phones)))
                )
            }

    def _last_messages(
        self, conn: Connection, phones: Sequence[str]
    ) -> dict[str, ThreadMessage]:
        wanted = list(phones)
        inbound = select(
            _messages.c.from_number.label("phone"), func.max(_messages.c.id)
        ).where(_messages.c.direction == "inbound", _messages.c.from_number.in_(wanted))
        outbound = select(
            _messages.c.to_number.label("phone"), func.max(_messages.c.id)
        ).where(_messages.c.direction == "outbound", _messages.c.to_number.in_(wanted))
        newest: dict[str, int] = {}
        for stmt in (
            inbound.group_by(_messages.c.from_number),
            outbound.group_by(_messages.c.to_number),
        ):
            for phone, message_id in conn.execute(stmt):
                newest[phone] = max(newest.get(phone, 0), message_id)
        by_id = self._messages_by_id(conn, list(newest.values()))
        return {phone: by_id[mid] for phone, mid in newest.items() if mid in by_id}

    def _unread(self, conn: Connection, phones: Sequence[str]) -> dict[str, int]:
        rows = conn.execute(
            select(_messages.c.from_number, func.count())
            .select_from(
                _messages.join(_contacts, _contacts.c.phone == _messages.c.from_number)
            )
            .where(
                _messages.c.direction == "inbound",
                _messages.c.from_number.in_(list(phones)),
                _messages.c.id > func.coalesce(_contacts.c.read_message_id, 0),
            )
            .group_by(_messages.c.from_number)
        )
        return {phone: int(count) for phone, count in rows}

    # -- one conversation ----------------------------------------------------

    def _thread_select(self) -> Any:
        return select(
            *_messages.c,
            _outbox.c.id.label("outbox_id"),
            _outbox.c.status.label("outbox_status"),
            _outbox.c.attempts,
            _outbox.c.last_error,
            _outbox.c.last_error_code,
            _outbox.c.next_attempt_at,
        ).select_from(
            _messages.outerjoin(_outbox, _outbox.c.message_id == _messages.c.id)
        )

    def _messages_by_id(
        self, conn: Connection, ids: Sequence[int]
    ) -> dict[int, ThreadMessage]:
        if not ids:
            return {}
        rows = conn.execute(self._thread_select().where(_messages.c.id.in_(ids)))
        return {row.id: _thread_message(row) for row in rows}

    def thread(self, phone: str, *, limit: int = 300) -> list[ThreadMessage]:
        """The newest ``limit`` messages with ``phone``, oldest first."""
        with self.db.read() as conn:
            rows = conn.execute(
                self._thread_select()
                .where(_of_phone(phone))
                .order_by(_messages.c.id.desc())
                .limit(limit)
            ).all()
        return [_thread_message(row) for row in reversed(rows)]

    def message(self, message_id: int) -> ThreadMessage | None:
        with self.db.read() as conn:
            return self._messages_by_id(conn, [message_id]).get(message_id)

    # -- the outbox ----------------------------------------------------------

    def outbox(self, *, limit: int = 200) -> list[OutboxEntry]:
        """Rows that are not sent yet (queued, sending, being reconciled) and
        the newest failed ones, oldest open row first."""
        columns = (
            *_outbox.c,
            _messages.c.sent_by,
            _contacts.c.id.label("contact_id"),
        )
        joined = _outbox.join(
            _messages, _messages.c.id == _outbox.c.message_id
        ).outerjoin(_contacts, _contacts.c.phone == _outbox.c.to_number)
        with self.db.read() as conn:
            open_rows = conn.execute(
                select(*columns)
                .select_from(joined)
                .where(_outbox.c.status.in_(OPEN_OUTBOX))
                .order_by(_outbox.c.id)
                .limit(limit)
            ).all()
            failed = conn.execute(
                select(*columns)
                .select_from(joined)
                .where(_outbox.c.status == "failed")
                .order_by(_outbox.c.updated_at.desc(), _outbox.c.id.desc())
                .limit(limit)
            ).all()
        first_open: dict[str, int] = {}
        entries: list[OutboxEntry] = []
        for row in [*open_rows, *failed]:
            behind = None
            if row.status in OPEN_OUTBOX:
                # The worker sends one number's rows in order: a row waits
                # while an earlier one to the same number is open.
                behind = first_open.setdefault(row.to_number, row.id)
                behind = behind if behind != row.id else None
            entries.append(_outbox_entry(row, behind))
        return entries

    def retry(self, outbox_id: int, now: datetime) -> bool:
        """Put a failed row back, to be reconciled with Twilio before any send.

        The row becomes ``unknown``: the send worker first looks for the
        message in Twilio's message list (and adopts it if Twilio has it),
        and only sends when Twilio has no trace of it. Its attempts start
        again from zero; its message goes back to ``pending``. False when the
        row is not failed (any more).
        """
        with self.db.begin() as conn:
            message_id = conn.execute(
                update(_outbox)
                .where(_outbox.c.id == outbox_id, _outbox.c.status == "failed")
                .values(
                    status="unknown",
                    attempts=0,
                    next_attempt_at=now,
                    lease_expires_at=None,
                    claimed_by=None,
                    updated_at=now,
                )
                .returning(_outbox.c.message_id)
            ).scalar_one_or_none()
            if message_id is None:
                return False
            # "failed" is final in the status machine: only a reset lets the
            # new attempt's statuses show.
            conn.execute(
                update(_messages)
                .where(_messages.c.id == message_id)
                .values(
                    status="pending",
                    error_code=None,
                    error_message=None,
                    updated_at=now,
                )
            )
            return True

    def cancel(self, outbox_id: int, now: datetime) -> bool:
        """Cancel a queued row before any worker takes it; False when it is not
        queued (any more): a row being sent or reconciled may be at Twilio."""
        row = self._outbox.row(outbox_id)
        if row is None or row["status"] != "queued":
            return False
        return self._outbox.cancel([outbox_id], now=now)[outbox_id] == CANCELLED

    def outbox_row(self, outbox_id: int) -> OutboxEntry | None:
        with self.db.read() as conn:
            row = conn.execute(
                select(
                    *_outbox.c, _messages.c.sent_by, _contacts.c.id.label("contact_id")
                )
                .select_from(
                    _outbox.join(
                        _messages, _messages.c.id == _outbox.c.message_id
                    ).outerjoin(_contacts, _contacts.c.phone == _outbox.c.to_number)
                )
                .where(_outbox.c.id == outbox_id)
            ).first()
        return _outbox_entry(row, None) if row is not None else None

    # -- live updates ----------------------------------------------------------

    def version(self, view: str, phone: str | None = None) -> str:
        """A token that changes whenever what ``view`` shows changed: the live
        pages compare it (all indexed maxima, cheap to ask every second).

        Views: ``list``, ``thread`` (of ``phone``), ``outbox``, ``broadcasts``,
        ``scheduled``. What moves with the clock alone (a row held for quiet
        hours, a send time come) is the caller's to look at now and then.
        """
        with self.db.read() as conn:
            if view == "thread" and phone is not None:
                parts = [
                    conn.execute(_newest(_messages).where(_of_phone(phone))).one(),
                    conn.execute(
                        select(func.max(_outbox.c.updated_at)).where(
                            _outbox.c.to_number == phone
                        )
                    ).one(),
                    conn.execute(
                        select(_contacts.c.updated_at).where(_contacts.c.phone == phone)
                    ).first(),
                ]
            elif view in ("broadcasts", "scheduled"):
                # Every send, cancel and delivery report touches the message;
                # a pause, resume, cancel or import batch the broadcast.
                parts = [conn.execute(_newest(_messages)).one()]
                if view == "broadcasts":
                    parts.append(conn.execute(_newest(_broadcasts)).one())
            elif view == "outbox":
                parts = [
                    conn.execute(
                        _newest(_outbox).where(
                            _outbox.c.status.in_((*OPEN_OUTBOX, "failed"))
                        )
                    ).one()
                ]
            else:
                parts = [
                    conn.execute(_newest(_messages)).one(),
                    conn.execute(select(func.max(_contacts.c.updated_at))).one(),
                ]
        return repr([tuple(p) if p is not None else None for p in parts])

    # -- login throttle ------------------------------------------------------

    def login_wait(self, address: str, now: float, *, per_minute: int) -> float:
        """Seconds until ``address`` may try a password again (0: now).

        A generic cell rate algorithm on the ``rate_limits`` table (shared by
        every web process): ``per_minute`` failures in a burst, then one more
        every ``60 / per_minute`` seconds.
        """
        with self.db.read() as conn:
            tat = conn.execute(
                select(_rates.c.next_at).where(_rates.c.key == _login_key(address))
            ).scalar_one_or_none()
        if tat is None:
            return 0.0
        interval = 60.0 / per_minute
        return max(0.0, float(tat) - (60.0 - interval) - now)

    def login_failed(self, address: str, now: float, *, per_minute: int) -> None:
        """Count one failed login of ``address``."""
        interval = 60.0 / per_minute
        insert = self.db.insert(_rates).values(
            key=bindparam("key"), next_at=bindparam("first")
        )
        later = case(
            (_rates.c.next_at > bindparam("now"), _rates.c.next_at),
            else_=bindparam("now"),
        )
        stmt = insert.on_conflict_do_update(
            index_elements=["key"], set_={"next_at": later + interval}
        )
        with self.db.begin() as conn:
            conn.execute(
                stmt, {"key": _login_key(address), "first": now + interval, "now": now}
            )


def _newest(table: Table) -> Any:
    return select(func.max(table.c.updated_at), func.max(table.c.id))


def _login_key(address: str) -> str:
    # rate_limits also paces senders (keys: numbers, MG…, "default").
    return ("console-login:" + address)[:64]


def _thread_message(row: Any) -> ThreadMessage:
    return ThreadMessage(
        id=row.id,
        direction=row.direction,
        body=row.body or "",
        # Inbound media are {url, content_type}; outbound ones are URLs.
        media=tuple(
            m if isinstance(m, dict) else {"url": str(m), "content_type": None}
            for m in (row.media or ())
        ),
        status=row.status,
        error_code=row.error_code,
        num_segments=row.num_segments,
        encoding=row.encoding,
        created_at=row.created_at,
        sent_by=row.sent_by,
        sid=row.sid,
        outbox_id=row.outbox_id,
        outbox_status=row.outbox_status,
        attempts=row.attempts or 0,
        last_error=row.last_error,
        last_error_code=row.last_error_code,
        next_attempt_at=row.next_attempt_at,
    )


def _outbox_entry(row: Any, behind: int | None) -> OutboxEntry:
    return OutboxEntry(
        id=row.id,
        message_id=row.message_id,
        to=row.to_number,
        contact_id=row.contact_id,
        body=row.body or "",
        media_count=len(row.media or ()),
        status=row.status,
        attempts=row.attempts or 0,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        last_error_code=row.last_error_code,
        created_at=row.created_at,
        updated_at=row.updated_at,
        sent_by=row.sent_by,
        held_behind=behind,
    )

"""The inbox: inbound messages the webhook recorded and a worker handles.

The webhook's whole job is :meth:`SqlInbox.record`: one short transaction
(one statement on PostgreSQL, which also notifies listening workers) that
stores the message and its inbox row, unless its MessageSid was seen before.
A worker claims rows with leases (one contact's rows one at a time, in the
order they arrived), runs the bot outside any transaction, and commits what
the handler did with :meth:`SqlInbox.complete`, fenced by its claim.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Table,
    and_,
    bindparam,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased

from textwire.conversation import ConversationKey, StateRecord, apply_state_changes
from textwire.handoff import HandoffChange, HandoffState
from textwire.messages import Inbound, Media

from .console import apply_handoff, handoff_of
from .contacts import SqlContacts
from .engine import Database, Prepared
from .outbox import NewMessage, SqlOutbox
from .schema import Contact, InboxItem, Message
from .state import SqlStates

__all__ = ["NOTIFY_CHANNEL", "OPEN_INBOX", "ClaimedInbound", "SqlInbox"]

logger = logging.getLogger("textwire.storage")

NOTIFY_CHANNEL = "textwire_inbox"
"""PostgreSQL channel a new inbox row is announced on (``LISTEN`` in workers)."""

OPEN_INBOX = ("pending", "handling")

_messages = cast(Table, Message.__table__)
_inbox = cast(Table, InboxItem.__table__)
_contacts = cast(Table, Contact.__table__)


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimedInbound:
    """An inbox row a worker (or a TwiML request) holds, with its message."""

    id: int
    message_id: int
    msg: Inbound
    attempts: int
    opted_out: bool
    public_url: str | None = None
    # The contact is with a person (the operator console) since.
    handoff: HandoffState | None = None


class SqlInbox:
    """The ``inbox`` table and the inbound rows of ``messages``."""

    def __init__(
        self,
        db: Database,
        contacts: SqlContacts,
        states: SqlStates,
        outbox: SqlOutbox,
    ) -> None:
        self.db = db
        self.contacts = contacts
        self.states = states
        self.outbox = outbox
        insert_message = (
            db.insert(_messages)
            .values(
                direction="inbound",
                sid=bindparam("sid"),
                account_sid=bindparam("account_sid"),
                messaging_service_sid=bindparam("service"),
                from_number=bindparam("from_"),
                to_number=bindparam("to"),
                body=bindparam("body"),
                media=bindparam("media", type_=_messages.c.media.type),
                num_segments=bindparam("segments"),
                status="received",
                created_at=bindparam("now"),
                updated_at=bindparam("now"),
            )
            .on_conflict_do_nothing(index_elements=["sid"])
        )
        self._insert_message = insert_message.returning(_messages.c.id)
        self._record_pg = _one_statement_record(insert_message)
        # The webhook's statements, on the driver's cursor (see Prepared).
        self._fast_pg = Prepared(self._record_pg, db.engine)
        self._fast_message = Prepared(self._insert_message, db.engine)
        self._insert_inbox = (
            db.insert(_inbox)
            .values(
                message_id=bindparam("message_id"),
                contact=bindparam("from_"),
                params=bindparam("params", type_=_inbox.c.params.type),
                public_url=bindparam("public_url"),
                status=bindparam("inbox_status"),
                attempts=bindparam("attempts"),
                claimed_by=bindparam("claimed_by"),
                lease_expires_at=bindparam("lease_until"),
                next_attempt_at=bindparam("now"),
                created_at=bindparam("now"),
            )
            .returning(_inbox.c.id)
        )
        self._fast_inbox = Prepared(self._insert_inbox, db.engine)
        self._done = (
            update(_inbox)
            .where(
                _inbox.c.id == bindparam("item_id"),
                _inbox.c.claimed_by == bindparam("worker"),
                _inbox.c.status == "handling",
            )
            .values(
                status="done",
                lease_expires_at=None,
                handled_at=bindparam("now"),
            )
        )

    # -- the webhook -----------------------------------------------------------

    def record(
        self,
        msg: Inbound,
        now: datetime,
        *,
        claim_for: str | None = None,
        lease: timedelta | None = None,
        public_url: str | None = None,
    ) -> int | None:
        """Store ``msg`` and its inbox row; ``None`` when its MessageSid was seen
        before (a duplicate delivery, including one racing this one).

        ``claim_for`` records the row already claimed by that id, for ``lease``
        (the TwiML reply mode handles it in the request; if that request dies,
        a worker takes the row once the lease runs out). ``public_url`` is the
        base of the bot's media URLs the handler should use, when the settings
        name none (the webhook derived it from the request).
        """
        values: dict[str, Any] = {
            "sid": msg.sid,
            "account_sid": msg.account_sid,
            "service": msg.messaging_service_sid,
            "from_": msg.from_,
            "to": msg.to,
            "body": msg.body,
            "media": [
                {"url": m.url, "content_type": m.content_type} for m in msg.media
            ],
            "segments": msg.num_segments,
            "now": now,
            "params": dict(msg.params),
            "public_url": public_url,
            "inbox_status": "handling" if claim_for else "pending",
            "attempts": 1 if claim_for else 0,
            "claimed_by": claim_for,
            "lease_until": now + lease if claim_for and lease else None,
        }
        if self.db.dialect == "postgresql":
            # One statement: the message, its inbox row and the NOTIFY. Run
            # again only when the connection was found dead; had the first
            # run committed, the second finds its MessageSid (a duplicate).
            inbox_id: int | None = self.db.raw_write(
                lambda cursor: self._fast_pg.fetch_first(cursor, values)
            )
            return inbox_id
        return self.db.raw_write(lambda cursor: self._record_sqlite(cursor, values))

    def _record_sqlite(self, cursor: Any, values: dict[str, Any]) -> int | None:
        message_id = self._fast_message.fetch_first(cursor, values)
        if message_id is None:
            return None
        values["message_id"] = message_id
        return int(self._fast_inbox.fetch_first(cursor, values))

    # -- the worker ------------------------------------------------------------

    def claim(
        self, now: datetime, *, limit: int, worker_id: str, lease: timedelta
    ) -> list[ClaimedInbound]:
        """Atomically take up to ``limit`` due rows for ``worker_id``.

        Due rows are pending ones whose time has come and ``handling`` ones
        whose worker's lease ran out. A row is skipped while an earlier row of
        the same contact is still open, so one contact's messages are handled
        one at a time, in the order they arrived, by however many workers.
        """
        earlier = aliased(InboxItem)
        blocked = exists().where(
            earlier.contact == InboxItem.contact,
            earlier.id < InboxItem.id,
            earlier.status.in_(OPEN_INBOX),
        )
        due = or_(
            and_(InboxItem.status == "pending", InboxItem.next_attempt_at <= now),
            and_(InboxItem.status == "handling", InboxItem.lease_expires_at < now),
        )
        ids = (
            select(InboxItem.id)
            .where(due, ~blocked)
            .order_by(InboxItem.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        take = (
            update(InboxItem)
            .where(InboxItem.id.in_(ids))
            .values(
                status="handling",
                attempts=InboxItem.attempts + 1,
                claimed_by=worker_id,
                lease_expires_at=now + lease,
            )
            .returning(InboxItem.id)
        )
        with self.db.begin() as conn:
            claimed = list(conn.execute(take).scalars())
            if not claimed:
                return []
            rows = conn.execute(self._claimed_rows(claimed)).all()
        return sorted((_claimed(row) for row in rows), key=lambda item: item.id)

    def _claimed_rows(self, ids: Sequence[int]) -> Any:
        return (
            select(
                _inbox.c.id,
                _inbox.c.message_id,
                _inbox.c.attempts,
                _inbox.c.params,
                _inbox.c.public_url,
                _messages.c.sid,
                _messages.c.account_sid,
                _messages.c.messaging_service_sid,
                _messages.c.from_number,
                _messages.c.to_number,
                _messages.c.body,
                _messages.c.media,
                _messages.c.num_segments,
                func.coalesce(_contacts.c.opted_out, False).label("opted_out"),
                _contacts.c.handoff_at,
                _contacts.c.handoff_active_at,
                _contacts.c.handoff_note,
                _contacts.c.handoff_by,
            )
            .join(_messages, _messages.c.id == _inbox.c.message_id)
            .outerjoin(_contacts, _contacts.c.phone == _inbox.c.contact)
            .where(_inbox.c.id.in_(list(ids)))
        )

    def held(self, inbox_id: int) -> ClaimedInbound | None:
        """The row ``inbox_id`` with its message (a TwiML request's own)."""
        with self.db.read() as conn:
            row = conn.execute(self._claimed_rows([inbox_id])).first()
        return _claimed(row) if row is not None else None

    def renew(
        self, ids: Sequence[int], worker_id: str, *, now: datetime, lease: timedelta
    ) -> set[int]:
        """Extend the leases ``worker_id`` holds on ``ids``; the ones still its."""
        if not ids:
            return set()
        with self.db.begin() as conn:
            kept = conn.execute(
                update(InboxItem)
                .where(
                    InboxItem.id.in_(list(ids)),
                    InboxItem.claimed_by == worker_id,
                    InboxItem.status == "handling",
                )
                .values(lease_expires_at=now + lease)
                .returning(InboxItem.id)
            )
            return set(kept.scalars())

    def complete(
        self,
        item: ClaimedInbound,
        worker_id: str,
        *,
        now: datetime,
        replies: Sequence[NewMessage] = (),
        state_changes: Mapping[ConversationKey, StateRecord | None] | None = None,
        opt_out: bool | None = None,
        deliver: bool = True,
        handoff: HandoffChange | None = None,
        later: Sequence[NewMessage] = (),
    ) -> list[int] | None:
        """Commit what handling ``item`` did, and mark it done, in one transaction.

        Fenced by the claim: when ``worker_id`` no longer holds the row (its
        lease ran out and another worker took it), nothing is written and
        ``None`` is returned. Otherwise the outbox ids of ``replies``.
        ``later`` are scheduled messages: queued for the worker even when the
        replies went out in TwiML (``deliver=False``).
        """
        with self.db.begin() as conn:
            done = conn.execute(
                self._done, {"item_id": item.id, "worker": worker_id, "now": now}
            )
            if done.rowcount != 1:
                logger.warning(
                    "inbox %s was taken over by another worker; its result dropped",
                    item.id,
                )
                return None
            ids = self._apply(
                conn, item, now, replies, state_changes or {}, opt_out, deliver
            )
            if handoff is not None:
                apply_handoff(conn, self.contacts, item.msg.from_, handoff, now)
            if later:
                self.outbox.enqueue_many(conn, later, now=now)
            return ids

    def _apply(
        self,
        conn: Connection,
        item: ClaimedInbound,
        now: datetime,
        replies: Sequence[NewMessage],
        state_changes: Mapping[ConversationKey, StateRecord | None],
        opt_out: bool | None,
        deliver: bool,
    ) -> list[int]:
        contact = item.msg.from_
        if opt_out is None:
            self.contacts.ensure(conn, contact, now)
        else:
            self.contacts.set_opt_out(conn, contact, opt_out, now)
        if state_changes:
            apply_state_changes(self.states.store(conn), state_changes)
        return self.outbox.enqueue_many(conn, replies, now=now, deliver=deliver)

    def release(
        self,
        item: ClaimedInbound,
        worker_id: str,
        *,
        until: datetime,
        error: str,
        failed: bool = False,
    ) -> bool:
        """Give a claimed row back, due again at ``until`` (or ``failed`` for
        good); False when the row is no longer ``worker_id``'s."""
        with self.db.begin() as conn:
            result = conn.execute(
                update(InboxItem)
                .where(
                    InboxItem.id == item.id,
                    InboxItem.claimed_by == worker_id,
                    InboxItem.status == "handling",
                )
                .values(
                    status="failed" if failed else "pending",
                    next_attempt_at=until,
                    lease_expires_at=None,
                    claimed_by=None,
                    last_error=error,
                )
            )
            return result.rowcount == 1

    # -- reading ---------------------------------------------------------------

    def stats(self, now: datetime) -> tuple[int, datetime | None]:
        """Open inbox rows, and the arrival time of the oldest pending one."""
        stmt = select(
            func.count(),
            func.min(_inbox.c.created_at).filter(_inbox.c.status == "pending"),
        ).where(_inbox.c.status.in_(OPEN_INBOX))
        with self.db.read() as conn:
            depth, oldest = conn.execute(stmt).one()
        if isinstance(oldest, datetime) and oldest.tzinfo is None:
            from datetime import UTC

            oldest = oldest.replace(tzinfo=UTC)
        return int(depth), oldest

    def rows(self) -> list[dict[str, Any]]:
        """Every inbox row, oldest first (tests, tools)."""
        with self.db.read() as conn:
            return [
                dict(r._mapping)
                for r in conn.execute(select(*_inbox.c).order_by(_inbox.c.id))
            ]


def _one_statement_record(insert_message: Any) -> Any:
    """PostgreSQL: the message, its inbox row and the NOTIFY in one statement
    (one round trip); a duplicate SID inserts neither and returns no row."""
    message = insert_message.returning(_messages.c.id, _messages.c.from_number).cte("m")
    inbox = (
        _inbox.insert()
        .from_select(
            [
                "message_id",
                "contact",
                "params",
                "public_url",
                "status",
                "attempts",
                "claimed_by",
                "lease_expires_at",
                "next_attempt_at",
                "created_at",
            ],
            select(
                message.c.id,
                message.c.from_number,
                bindparam("params", type_=_inbox.c.params.type),
                bindparam("public_url", type_=_inbox.c.public_url.type),
                bindparam("inbox_status", type_=_inbox.c.status.type),
                bindparam("attempts", type_=_inbox.c.attempts.type),
                bindparam("claimed_by", type_=_inbox.c.claimed_by.type),
                bindparam("lease_until", type_=_inbox.c.lease_expires_at.type),
                bindparam("now", type_=_inbox.c.next_attempt_at.type),
                bindparam("now", type_=_inbox.c.created_at.type),
            ),
        )
        .returning(_inbox.c.id)
        .cte("i")
    )
    return select(inbox.c.id, func.pg_notify(literal(NOTIFY_CHANNEL), literal("")))


def _claimed(row: Any) -> ClaimedInbound:
    params: dict[str, str] = {str(k): str(v) for k, v in (row.params or {}).items()}
    msg = Inbound(
        sid=row.sid,
        account_sid=row.account_sid or "",
        from_=row.from_number,
        to=row.to_number,
        body=row.body or "",
        media=tuple(
            Media(m.get("url", ""), m.get("content_type")) for m in (row.media or ())
        ),
        messaging_service_sid=row.messaging_service_sid,
        num_segments=row.num_segments,
        from_country=(params.get("FromCountry") or "").strip() or None,
        to_country=(params.get("ToCountry") or "").strip() or None,
        params=params,
    )
    return ClaimedInbound(
        id=row.id,
        message_id=row.message_id,
        msg=msg,
        attempts=row.attempts,
        opted_out=bool(row.opted_out),
        public_url=row.public_url,
        handoff=handoff_of(row),
    )

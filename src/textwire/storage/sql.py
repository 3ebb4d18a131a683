"""The SQL store (SQLite and PostgreSQL): every dialect difference lives here."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    case,
    create_engine,
    delete,
    event,
    exists,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import aliased

from textwire.codes import CODES
from textwire.conversation import ConversationKey, StateRecord
from textwire.errors import StorageError
from textwire.messages import Inbound, segment_info

from .schema import Contact, ConversationStateRow, Message, OutboxItem, RateLimit

__all__ = [
    "OPEN_OUTBOX",
    "STATUS_RANK",
    "TWIML_OUTBOX",
    "ClaimedItem",
    "SqlStateStore",
    "SqlStore",
    "normalize_database_url",
]

logger = logging.getLogger("textwire.storage")

# Delivery statuses only move forward: a late "sent" never overwrites "delivered".
STATUS_RANK = {
    "pending": 0,
    "scheduled": 1,
    "accepted": 1,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "partially_delivered": 4,
    "read": 5,
}
# Outbox rows a worker may still claim (or that block later rows to the same
# phone); "sent", "failed" and "twiml" are final.
OPEN_OUTBOX = ("queued", "sending", "unknown")
# A reply answered in the webhook's TwiML: recorded, never claimed by a worker.
TWIML_OUTBOX = "twiml"


def normalize_database_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs that name no driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimedItem:
    """An outbox row a worker holds, with what it needs to send it."""

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


class SqlStore:
    """Contacts, messages, conversation state and the outbox in one database.

    ``SqlStore("sqlite:///textwire.db")`` (WAL mode, one writer at a time) or
    ``SqlStore("postgresql://user@host/db")`` (psycopg 3, row claims with
    ``FOR UPDATE SKIP LOCKED``).
    """

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = normalize_database_url(url)
        self.engine = engine or _make_engine(self.url)
        self.dialect = self.engine.dialect.name
        self._head: str | None = None

    def __repr__(self) -> str:
        return f"SqlStore({make_url(self.url).render_as_string(hide_password=True)!r})"

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction: committed on success, rolled back on error."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StorageError(f"database error: {exc.__class__.__name__}") from exc

    # -- schema ----------------------------------------------------------------

    def upgrade(self, revision: str = "head") -> None:
        """Apply the Alembic migrations up to ``revision``."""
        from alembic import command

        command.upgrade(self._alembic_config(), revision)

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        if self._head is None:
            from alembic.script import ScriptDirectory

            script = ScriptDirectory.from_config(self._alembic_config())
            self._head = script.get_current_head()
        return self._head

    def _alembic_config(self) -> Any:
        from alembic.config import Config

        cfg = Config()
        location = resources.files("textwire.storage") / "migrations"
        cfg.set_main_option("script_location", str(location))
        cfg.attributes["engine"] = self.engine
        return cfg

    def check(self) -> None:
        """Raise ``StorageError`` unless the database answers and is migrated."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise StorageError(
                f"database unreachable: {exc.__class__.__name__}"
            ) from exc
        current, head = self.current_revision(), self.head_revision()
        if current != head:
            raise StorageError(
                f"database at revision {current or 'none'}, code expects {head}: "
                "run `textwire db upgrade`"
            )

    # -- inbound ---------------------------------------------------------------

    def record_inbound(
        self, conn: Connection, msg: Inbound, now: datetime
    ) -> int | None:
        """Store an inbound message; ``None`` when its MessageSid was seen before.

        Insert-on-conflict, so two deliveries racing each other cannot both win.
        """
        values = {
            "direction": "inbound",
            "sid": msg.sid,
            "account_sid": msg.account_sid,
            "messaging_service_sid": msg.messaging_service_sid,
            "from_number": msg.from_,
            "to_number": msg.to,
            "body": msg.body,
            "media": [
                {"url": m.url, "content_type": m.content_type} for m in msg.media
            ],
            "num_segments": msg.num_segments,
            "status": "received",
            "created_at": now,
            "updated_at": now,
        }
        stmt = self._insert(Message).values(**values)
        stmt = stmt.on_conflict_do_nothing(index_elements=["sid"]).returning(Message.id)
        return conn.execute(stmt).scalar_one_or_none()

    def ensure_contact(self, conn: Connection, phone: str, now: datetime) -> bool:
        """Create the contact if new; return whether it has opted out."""
        stmt = self._insert(Contact).values(
            phone=phone, opted_out=False, created_at=now, updated_at=now
        )
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["phone"]))
        opted = conn.execute(select(Contact.opted_out).where(Contact.phone == phone))
        return bool(opted.scalar_one())

    def opted_out_among(self, phones: Sequence[str]) -> set[str]:
        """Which of ``phones`` have opted out."""
        if not phones:
            return set()
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Contact.phone).where(
                    Contact.phone.in_(set(phones)), Contact.opted_out.is_(True)
                )
            )
            return set(rows.scalars())

    def set_opt_out(
        self, conn: Connection, phone: str, opted_out: bool, now: datetime
    ) -> None:
        self.ensure_contact(conn, phone, now)
        conn.execute(
            update(Contact)
            .where(Contact.phone == phone)
            .values(
                opted_out=opted_out,
                opted_out_at=now if opted_out else None,
                updated_at=now,
            )
        )

    # -- outbox ----------------------------------------------------------------

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
    ) -> int:
        """Write one outbound message and its outbox row; return the outbox id.

        With ``deliver=False`` the message goes out some other way (in the
        webhook's TwiML): its outbox row is written already final, status
        ``twiml``, so no worker ever claims it, while status callbacks still
        find the message by the outbox id (``/twilio/status?outbox=N``).
        """
        info = segment_info(body)
        message_id = conn.execute(
            self._insert(Message)
            .values(
                direction="outbound",
                from_number=from_,
                messaging_service_sid=messaging_service_sid,
                to_number=to,
                body=body,
                media=list(media),
                num_segments=info.segments,
                encoding=info.encoding,
                status="pending",
                in_reply_to=in_reply_to,
                created_at=now,
                updated_at=now,
            )
            .returning(Message.id)
        ).scalar_one()
        outbox_id: int = conn.execute(
            self._insert(OutboxItem)
            .values(
                message_id=message_id,
                to_number=to,
                from_number=from_,
                messaging_service_sid=messaging_service_sid,
                body=body,
                media=list(media),
                status="queued" if deliver else TWIML_OUTBOX,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )
            .returning(OutboxItem.id)
        ).scalar_one()
        return outbox_id

    def claim(
        self, now: datetime, *, limit: int, worker_id: str, lease: timedelta
    ) -> list[ClaimedItem]:
        """Atomically take up to ``limit`` due rows for ``worker_id``.

        Due rows are queued ones whose time has come, ``unknown`` ones (to be
        reconciled), and ``sending`` ones whose worker's lease ran out. A row
        is skipped while an earlier row to the same number is still open, so
        the parts of a reply reach each phone in the order they were queued.
        """
        earlier = aliased(OutboxItem)
        blocked = exists().where(
            earlier.to_number == OutboxItem.to_number,
            earlier.id < OutboxItem.id,
            earlier.status.in_(OPEN_OUTBOX),
        )
        due = or_(
            and_(
                OutboxItem.status.in_(("queued", "unknown")),
                OutboxItem.next_attempt_at <= now,
            ),
            and_(OutboxItem.status == "sending", OutboxItem.lease_expires_at < now),
        )
        ids = (
            select(OutboxItem.id)
            .where(due, ~blocked)
            .order_by(OutboxItem.next_attempt_at, OutboxItem.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        stmt = (
            update(OutboxItem)
            .where(OutboxItem.id.in_(ids))
            .values(
                # A row that was "sending" or "unknown" may already be at Twilio.
                reconcile=case(
                    (OutboxItem.status.in_(("sending", "unknown")), True),
                    else_=False,
                ),
                status="sending",
                attempts=OutboxItem.attempts + 1,
                claimed_by=worker_id,
                lease_expires_at=now + lease,
                first_attempt_at=func.coalesce(OutboxItem.first_attempt_at, now),
                updated_at=now,
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
            )
        )
        with self.begin() as conn:
            rows = conn.execute(stmt).all()
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
            )
            for r in rows
        ]
        items.sort(key=lambda item: item.id)
        return items

    def renew_lease(
        self, item: ClaimedItem, worker_id: str, *, now: datetime, lease: timedelta
    ) -> bool:
        """Extend ``worker_id``'s lease on a row; False if the row is no longer its."""
        with self.begin() as conn:
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
        with self.begin() as conn:
            return self._finish(
                conn,
                item,
                worker_id,
                now,
                status="unknown" if item.reconcile else "queued",
                next_attempt_at=until,
                attempts=OutboxItem.attempts - 1,
            )

    # -- rate limits -----------------------------------------------------------

    def reserve_rate(
        self, key: str, *, cost: float, now: float, max_wait: float
    ) -> tuple[bool, float]:
        """Take ``cost`` seconds of sender ``key``'s capacity, atomically.

        Returns ``(True, start)`` with the time this send may start (at most
        ``max_wait`` from ``now``), or ``(False, available)`` with the time the
        sender is free again when that is further away. Times are epoch seconds.
        """
        table = RateLimit.__table__
        later = case((table.c.next_at > now, table.c.next_at), else_=now)
        stmt = (
            self._insert(RateLimit)
            .values(key=key, next_at=now + cost)
            .on_conflict_do_update(
                index_elements=["key"],
                set_={"next_at": later + cost},
                where=table.c.next_at <= now + max_wait,
            )
            .returning(table.c.next_at)
        )
        with self.begin() as conn:
            reserved = conn.execute(stmt).scalar_one_or_none()
            if reserved is not None:
                return True, float(reserved) - cost
            available = conn.execute(
                select(table.c.next_at).where(table.c.key == key)
            ).scalar_one()
            return False, float(available)

    def slow_down(self, key: str, *, until: float) -> None:
        """Keep every worker off sender ``key`` until ``until`` (after a 429)."""
        table = RateLimit.__table__
        later = case((table.c.next_at > until, table.c.next_at), else_=until)
        stmt = (
            self._insert(RateLimit)
            .values(key=key, next_at=until)
            .on_conflict_do_update(index_elements=["key"], set_={"next_at": later})
        )
        with self.begin() as conn:
            conn.execute(stmt)

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
        with self.begin() as conn:
            if not self._finish(
                conn, item, worker_id, now, status="sent", provider_sid=sid
            ):
                return False
            values: dict[str, Any] = {"sid": sid, "sent_at": now, "updated_at": now}
            if num_segments:
                values["num_segments"] = num_segments
            conn.execute(
                update(Message).where(Message.id == item.message_id).values(**values)
            )
            self._advance_status(conn, Message.id == item.message_id, status, now)
            return True

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
        with self.begin() as conn:
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
        with self.begin() as conn:
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

    # -- status ----------------------------------------------------------------

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
        with self.begin() as conn:
            where: Any
            if outbox_id is not None:
                message_id = conn.execute(
                    select(OutboxItem.message_id).where(OutboxItem.id == outbox_id)
                ).scalar_one_or_none()
                if message_id is None:
                    return False
                where = Message.id == message_id
                if sid:
                    # A TwiML reply learns its SID only here; a REST row may
                    # hear back before the worker stored it (the same SID).
                    # The outbox row first, then the message: the order the
                    # worker's mark_sent locks them in (else the two deadlock
                    # when a callback races the worker).
                    conn.execute(
                        update(OutboxItem)
                        .where(
                            OutboxItem.id == outbox_id,
                            OutboxItem.provider_sid.is_(None),
                        )
                        .values(provider_sid=sid)
                    )
                    conn.execute(
                        update(Message)
                        .where(where, Message.sid.is_(None))
                        .values(sid=sid, updated_at=now)
                    )
            elif sid:
                where = Message.sid == sid
            else:
                return False
            found = conn.execute(
                select(Message.id, Message.to_number).where(where)
            ).first()
            if found is None:
                return False
            if error_code is not None:
                conn.execute(
                    update(Message)
                    .where(where)
                    .values(error_code=error_code, error_message=error_message)
                )
                code = CODES.get(error_code)
                if code is not None and code.opt_out:
                    # Twilio says the recipient replied STOP (21610).
                    self.set_opt_out(conn, found.to_number, True, now)
            self._advance_status(conn, where, status, now)
            return True

    def _advance_status(
        self, conn: Connection, where: Any, status: str, now: datetime
    ) -> None:
        rank = STATUS_RANK.get(status)
        if rank is None:
            logger.warning("unknown message status %r kept as is", status)
            conn.execute(update(Message).where(where).values(updated_at=now))
            return
        lower = [s for s, r in STATUS_RANK.items() if r < rank]
        conn.execute(
            update(Message)
            .where(where, Message.status.in_(lower))
            .values(status=status, updated_at=now)
        )

    # -- reading (CLI, tests, health) -----------------------------------------

    def outbox_row(self, outbox_id: int) -> dict[str, Any] | None:
        """One outbox row with its message's delivery status, for people."""
        with self.engine.connect() as conn:
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

    def messages(self, direction: str | None = None) -> list[dict[str, Any]]:
        stmt = select(Message).order_by(Message.id)
        if direction:
            stmt = stmt.where(Message.direction == direction)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.with_only_columns(*Message.__table__.c))
            return [dict(r._mapping) for r in rows]

    def known_sids(
        self, sids: Sequence[str], *, except_message: int | None = None
    ) -> set[str]:
        """Which of ``sids`` are already stored on a message (other than
        ``except_message``)."""
        if not sids:
            return set()
        stmt = select(Message.sid).where(Message.sid.in_(sids))
        if except_message is not None:
            stmt = stmt.where(Message.id != except_message)
        with self.engine.connect() as conn:
            return {sid for sid in conn.execute(stmt).scalars() if sid}

    def outbox_depth(self) -> int:
        with self.engine.connect() as conn:
            depth: int = conn.execute(
                select(func.count()).where(OutboxItem.status.in_(OPEN_OUTBOX))
            ).scalar_one()
        return depth

    def outbox_stats(self, now: datetime) -> tuple[int, datetime | None]:
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
            with self.engine.connect() as conn:
                depth, oldest = conn.execute(stmt).one()
        except SQLAlchemyError as exc:
            raise StorageError(f"database error: {exc.__class__.__name__}") from exc
        return int(depth), oldest

    # -- helpers ---------------------------------------------------------------

    def _insert(self, model: Any) -> Any:
        if self.dialect == "postgresql":
            return postgresql.insert(model)
        if self.dialect == "sqlite":
            return sqlite.insert(model)
        raise StorageError(f"unsupported database {self.dialect!r}")

    def state_store(self, conn: Connection) -> SqlStateStore:
        return SqlStateStore(self, conn)


class SqlStateStore:
    """Conversation state in the ``conversation_state`` table, inside ``conn``."""

    def __init__(self, store: SqlStore, conn: Connection) -> None:
        self._store = store
        self._conn = conn

    def load(self, key: ConversationKey) -> StateRecord | None:
        row = self._conn.execute(
            select(
                ConversationStateRow.state,
                ConversationStateRow.data,
                ConversationStateRow.expires_at,
            ).where(
                ConversationStateRow.bot_number == key.bot_number,
                ConversationStateRow.contact == key.contact,
            )
        ).first()
        if row is None:
            return None
        return StateRecord(
            state=row.state, data=row.data or {}, expires_at=row.expires_at
        )

    def save(self, key: ConversationKey, record: StateRecord) -> None:
        values = {
            "state": record.state,
            "data": dict(record.data),
            "expires_at": record.expires_at,
            "updated_at": _now(),
        }
        stmt = self._store._insert(ConversationStateRow).values(
            bot_number=key.bot_number, contact=key.contact, **values
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["bot_number", "contact"], set_=values
        )
        self._conn.execute(stmt)

    def delete(self, key: ConversationKey) -> None:
        self._conn.execute(
            delete(ConversationStateRow).where(
                ConversationStateRow.bot_number == key.bot_number,
                ConversationStateRow.contact == key.contact,
            )
        )


def _now() -> datetime:
    from .schema import utcnow

    return utcnow()


def _make_engine(url: str) -> Engine:
    # hide_parameters: SQLAlchemy's error messages would otherwise list every
    # bound value (numbers, bodies), and they end up in tracebacks and logs.
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise StorageError(
                "an in-memory SQLite database cannot be shared by the web server "
                "and the send worker; use a file, e.g. sqlite:///textwire.db"
            )
        engine = create_engine(url, pool_size=8, max_overflow=8, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=10,
            hide_parameters=True,
        )
    raise StorageError(
        f"unsupported database URL scheme {parsed.drivername!r}: use sqlite:/// "
        "or postgresql://"
    )


def _sqlite_on_connect(dbapi_conn: Any, record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own
    # transaction handling would start a deferred transaction too late).
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # One writer at a time, decided at BEGIN: no upgrade deadlocks, and an
    # outbox claim is a single atomic step.
    conn.exec_driver_sql("BEGIN IMMEDIATE")

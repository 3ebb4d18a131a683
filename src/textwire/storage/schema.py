"""Tables: contacts, messages (both directions), conversation state, the inbox,
the outbox, broadcasts and the senders' rate limits.

The Alembic migrations in ``textwire/storage/migrations`` create exactly these;
``tests/storage`` checks that the two never drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "PRIORITY_BULK",
    "PRIORITY_NORMAL",
    "Base",
    "Broadcast",
    "RateLimit",
    "Contact",
    "ConversationStateRow",
    "InboxItem",
    "Message",
    "OutboxItem",
    "UTCDateTime",
    "utcnow",
]

ID = BigInteger().with_variant(Integer, "sqlite")

# Outbox priorities: lower goes first. Replies, one-off sends and scheduled
# messages are normal; a broadcast's rows are bulk, so a contact who answers a
# broadcast is not stuck behind it.
PRIORITY_NORMAL = 0
PRIORITY_BULK = 1
JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python, naive UTC in the database (same on both)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; textwire stores aware UTC times")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime}


class Contact(Base):
    """Someone the bot talks to, by E.164 number."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    phone: Mapped[str] = mapped_column(String(64), unique=True)
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    opted_out_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Handed to a person (the operator console): since when, why, by whom
    # ("bot" or an operator's name), and the last sign of a person on it (the
    # handoff, or their latest reply), from which TEXTWIRE_HANDOFF_TIMEOUT runs.
    handoff_at: Mapped[datetime | None]
    handoff_active_at: Mapped[datetime | None]
    handoff_note: Mapped[str | None] = mapped_column(Text)
    handoff_by: Mapped[str | None] = mapped_column(String(128))
    # The newest inbound message an operator has seen (unread counts).
    read_message_id: Mapped[int | None] = mapped_column(ID)

    __table_args__ = (Index(None, "updated_at"), Index(None, "handoff_at"))


class Message(Base):
    """Every message in either direction, with Twilio's SID and delivery status."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    direction: Mapped[str] = mapped_column(String(16))  # inbound | outbound
    sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    account_sid: Mapped[str | None] = mapped_column(String(64))
    messaging_service_sid: Mapped[str | None] = mapped_column(String(64))
    from_number: Mapped[str | None] = mapped_column(String(64))
    to_number: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text, default="")
    media: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    num_segments: Mapped[int | None] = mapped_column(Integer)
    encoding: Mapped[str | None] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(32))
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_message: Mapped[str | None] = mapped_column(Text)
    in_reply_to: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    # The operator who wrote an outbound message (None: the bot).
    sent_by: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (
        Index(None, "to_number", "created_at"),
        Index(None, "from_number", "created_at"),
        # The console's live view looks for what changed since it last looked.
        Index(None, "updated_at"),
    )


class ConversationStateRow(Base):
    """The state of one conversation (bot number, contact number)."""

    __tablename__ = "conversation_state"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    bot_number: Mapped[str] = mapped_column(String(64))
    contact: Mapped[str] = mapped_column(String(64))
    state: Mapped[str | None] = mapped_column(String(255))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    expires_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("bot_number", "contact"),)


class InboxItem(Base):
    """One inbound message to handle, being handled, or done with.

    The webhook writes it (with the message) and answers Twilio; a worker
    handles it. status: ``pending`` (due at ``next_attempt_at``), ``handling``
    (claimed by ``claimed_by`` until ``lease_expires_at``), ``done``,
    ``failed`` (textwire's own handling failed too often; ``last_error`` says
    why). One contact's rows are handled one at a time, in ``id`` order.
    """

    __tablename__ = "inbox"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), unique=True)
    contact: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Base of the bot's media URLs as the webhook saw it (only when
    # TEXTWIRE_PUBLIC_URL is not set: derived from the request).
    public_url: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_expires_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    handled_at: Mapped[datetime | None]

    __table_args__ = (
        Index(None, "status", "next_attempt_at"),
        Index(None, "contact", "id"),
    )


class OutboxItem(Base):
    """One message waiting to be sent, being sent, or done with.

    status: ``queued`` (due at ``next_attempt_at``), ``sending`` (claimed by a
    worker until ``lease_expires_at``), ``unknown`` (the last attempt may have
    reached Twilio: reconcile before sending again), ``sent``, ``failed``,
    ``cancelled`` (never sent: cancelled while it waited), ``twiml``
    (answered in the webhook's TwiML: never claimed; kept so status callbacks
    and history find the message).

    ``send_at`` is when a scheduled message was asked to go (never before);
    ``priority`` orders due rows (lower first); ``broadcast_id`` links a
    broadcast's rows (claimed only while it is sending); ``quiet_hours``
    (``21:00-09:00``) holds the row while the recipient's local time (from
    ``time_zone``, else the number) is inside it, and ``held_until`` records
    the end of the last such hold.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), unique=True)
    to_number: Mapped[str] = mapped_column(String(64))
    from_number: Mapped[str | None] = mapped_column(String(64))
    messaging_service_sid: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text, default="")
    media: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    # Segments of the body: its cost against the sender's rate limit.
    segments: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_expires_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    first_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_code: Mapped[int | None] = mapped_column(Integer)
    provider_sid: Mapped[str | None] = mapped_column(String(64))
    reconcile: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    send_at: Mapped[datetime | None]
    priority: Mapped[int] = mapped_column(Integer, default=PRIORITY_NORMAL)
    broadcast_id: Mapped[int | None] = mapped_column(ForeignKey("broadcasts.id"))
    quiet_hours: Mapped[str | None] = mapped_column(String(16))
    time_zone: Mapped[str | None] = mapped_column(String(64))
    held_until: Mapped[datetime | None]

    __table_args__ = (
        Index(None, "status", "next_attempt_at"),
        Index(None, "to_number", "id"),
        Index(None, "broadcast_id", "status"),
        # The claim reads queued rows in this order and stops at its limit.
        Index(None, "status", "priority", "next_attempt_at", "id"),
    )


class Broadcast(Base):
    """One bulk send from a CSV file: its template, its counts, its state.

    status: ``importing`` (rows are being written; none is sent yet),
    ``sending`` (its outbox rows are claimed as they come due), ``paused``
    (none claimed until resumed), ``cancelled`` (its unsent rows cancelled).
    ``imported_rows`` is how many data rows of the file are committed: an
    interrupted import resumes after them. ``(name, source_sha256)`` is
    unique, so the same file under the same name is never queued twice.
    """

    __tablename__ = "broadcasts"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    source_path: Mapped[str] = mapped_column(Text)
    source_sha256: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    media: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    # The --at as written and the moment it was read: "tomorrow 09:00" means
    # the same instants when an interrupted import resumes.
    send_at_text: Mapped[str | None] = mapped_column(Text)
    planned_at: Mapped[datetime] = mapped_column(default=utcnow)
    quiet_hours: Mapped[str | None] = mapped_column(String(16))
    number_column: Mapped[str] = mapped_column(String(255))
    region: Mapped[str] = mapped_column(String(8))
    from_number: Mapped[str | None] = mapped_column(String(64))
    messaging_service_sid: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="importing")
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    valid: Mapped[int] = mapped_column(Integer, default=0)
    invalid: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    opted_out: Mapped[int] = mapped_column(Integer, default=0)
    imported_rows: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("name", "source_sha256"),)


class RateLimit(Base):
    """When each sender may next send, shared by every worker (epoch seconds)."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_at: Mapped[float] = mapped_column(Double)

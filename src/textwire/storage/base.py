"""What the worker, the webhooks and the metrics need of the database.

Small protocols, one per concern; :class:`~textwire.storage.sql.SqlStore`
(SQLite and PostgreSQL) is the implementation, and mypy checks that it fits
them (at the end of ``storage/sql.py``). The worker and the web layer are typed against
these, not against the SQL classes, so a store of another kind, or a test
double, needs only what they really call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection

if TYPE_CHECKING:
    from textwire.conversation import ConversationKey, StateRecord, StateStore
    from textwire.handoff import HandoffChange
    from textwire.messages import Inbound

    from .inbox import ClaimedInbound
    from .outbox import ClaimedItem, NewMessage, RatePlan, SentResult

__all__ = [
    "ContactStore",
    "InboxStore",
    "MessageStore",
    "OutboxStore",
    "RateLimitStore",
    "StateStores",
    "Store",
]


class InboxStore(Protocol):
    """Inbound messages: recorded by the webhook, handled by a worker."""

    def record(
        self,
        msg: Inbound,
        now: datetime,
        *,
        claim_for: str | None = None,
        lease: timedelta | None = None,
        public_url: str | None = None,
    ) -> int | None: ...

    def claim(
        self, now: datetime, *, limit: int, worker_id: str, lease: timedelta
    ) -> list[ClaimedInbound]: ...

    def held(self, inbox_id: int) -> ClaimedInbound | None: ...

    def renew(
        self, ids: Sequence[int], worker_id: str, *, now: datetime, lease: timedelta
    ) -> set[int]: ...

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
    ) -> list[int] | None: ...

    def release(
        self,
        item: ClaimedInbound,
        worker_id: str,
        *,
        until: datetime,
        error: str,
        failed: bool = False,
    ) -> bool: ...

    def stats(self, now: datetime) -> tuple[int, datetime | None]: ...


class OutboxStore(Protocol):
    """Outbound messages: queued, claimed with leases, and what came of them."""

    def enqueue_many(
        self,
        conn: Connection,
        messages: Sequence[NewMessage],
        *,
        now: datetime,
        deliver: bool = True,
    ) -> list[int]: ...

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
    ) -> list[ClaimedItem]: ...

    def renew_lease(
        self, item: ClaimedItem, worker_id: str, *, now: datetime, lease: timedelta
    ) -> bool: ...

    def defer(
        self, item: ClaimedItem, worker_id: str, *, until: datetime, now: datetime
    ) -> bool: ...

    def mark_sent(
        self,
        item: ClaimedItem,
        worker_id: str,
        *,
        sid: str,
        status: str,
        num_segments: int | None,
        now: datetime,
    ) -> bool: ...

    def mark_sent_many(
        self, results: Sequence[SentResult], worker_id: str, *, now: datetime
    ) -> list[bool]: ...

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
    ) -> bool: ...

    def mark_failed(
        self,
        item: ClaimedItem,
        worker_id: str,
        *,
        error: str,
        code: int | None,
        now: datetime,
    ) -> bool: ...

    def row(self, outbox_id: int) -> dict[str, Any] | None: ...

    def stats(self, now: datetime) -> tuple[int, datetime | None]: ...

    def waiting_counts(self, now: datetime) -> dict[str, int]: ...


class ContactStore(Protocol):
    """Contacts and their opt-out state."""

    def ensure(self, conn: Connection, phone: str, now: datetime) -> bool: ...

    def set_opt_out(
        self, conn: Connection, phone: str, opted_out: bool, now: datetime
    ) -> None: ...

    def opted_out_among(self, phones: Sequence[str]) -> set[str]: ...


class RateLimitStore(Protocol):
    """Each sender's rate-limit slots (taken inside the outbox's claim)."""

    def slow_down(self, key: str, *, until: float) -> None: ...


class MessageStore(Protocol):
    """History and delivery status."""

    def update_status(
        self,
        *,
        sid: str | None,
        outbox_id: int | None,
        status: str,
        error_code: int | None,
        error_message: str | None,
        now: datetime,
    ) -> bool: ...

    def known_sids(
        self, sids: Sequence[str], *, except_message: int | None = None
    ) -> set[str]: ...


class StateStores(Protocol):
    """Conversation state: inside a transaction, or read on its own."""

    def store(self, conn: Connection) -> StateStore: ...

    def reader(self) -> StateStore: ...


class Store(Protocol):
    """One database and what the worker and the web layer do with it."""

    @property
    def inbox(self) -> InboxStore: ...

    @property
    def outbox(self) -> OutboxStore: ...

    @property
    def contacts(self) -> ContactStore: ...

    @property
    def rates(self) -> RateLimitStore: ...

    @property
    def messages(self) -> MessageStore: ...

    @property
    def states(self) -> StateStores: ...

    @property
    def url(self) -> str: ...

    @property
    def dialect(self) -> str: ...

    def begin(self) -> AbstractContextManager[Connection]: ...

    def check(self) -> None: ...

    def dispose(self) -> None: ...

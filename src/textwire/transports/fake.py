"""FakeTransport: an in-memory Twilio for tests and local development.

It really "sends": every message is recorded in ``sent`` with a fresh SID, and
``find_sent`` lists them back, so reconciliation after an ``AmbiguousSendError``
can be exercised without a network::

    fake = FakeTransport()
    fake.fail_next(AmbiguousSendError("lost answer"), delivered=True)
    # the next send raises, yet the message is in fake.sent (Twilio got it)
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from textwire.errors import SendError
from textwire.transports.base import (
    OutboundMessage,
    SendReceipt,
    SentRecord,
    Transport,
)

__all__ = ["FakeTransport"]

Responder = Callable[[OutboundMessage], SendReceipt]


@dataclasses.dataclass(frozen=True, slots=True)
class _Record:
    message: OutboundMessage
    receipt: SendReceipt
    created: datetime


def new_sid(prefix: str = "SM") -> str:
    """A Twilio-shaped SID: ``prefix`` + 32 hex characters."""
    return prefix + secrets.token_hex(16)


class FakeTransport(Transport):
    """Records messages instead of sending them. Thread-safe.

    Args:
        responder: builds the receipt of each send (it may also raise a
            ``SendError``); by default a fresh ``SM…`` SID with status
            ``queued``. A message is recorded only when a receipt comes back.

    Attributes:
        sent: every message accepted so far, in order.
    """

    name = "fake"

    def __init__(self, responder: Responder | None = None) -> None:
        self.responder = responder
        self.sent: list[OutboundMessage] = []
        self._records: list[_Record] = []
        self._failures: deque[tuple[SendError, bool]] = deque()
        self._lock = threading.Lock()

    def fail_next(
        self, error: SendError, times: int = 1, *, delivered: bool = False
    ) -> None:
        """Make the next ``times`` sends raise ``error``.

        With ``delivered=True`` each of those messages is recorded in ``sent``
        (and found by ``find_sent``) before the error is raised: the request
        reached Twilio but its answer was lost.
        """
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        with self._lock:
            self._failures.extend([(error, delivered)] * times)

    def clear(self) -> None:
        """Forget sent messages and queued failures."""
        with self._lock:
            self.sent.clear()
            self._records.clear()
            self._failures.clear()

    @property
    def receipts(self) -> list[SendReceipt]:
        """The receipt of each message in ``sent``, in the same order."""
        with self._lock:
            return [record.receipt for record in self._records]

    def _send(self, message: OutboundMessage) -> SendReceipt:
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            error, delivered = failure
            if delivered:
                self._record(message, self._default_receipt(message))
            raise error
        if self.responder is not None:
            receipt = self.responder(message)
        else:
            receipt = self._default_receipt(message)
        self._record(message, receipt)
        return receipt

    def _record(self, message: OutboundMessage, receipt: SendReceipt) -> None:
        record = _Record(message, receipt, datetime.now(UTC))
        with self._lock:
            self.sent.append(message)
            self._records.append(record)

    @staticmethod
    def _default_receipt(message: OutboundMessage) -> SendReceipt:
        return SendReceipt(
            sid=new_sid(),
            status="queued",
            num_segments=_segments(message.body),
            num_media=len(message.media),
        )

    def find_sent(
        self, *, to: str, from_: str | None, since: datetime
    ) -> list[SentRecord]:
        """Recorded messages to ``to`` created at or after ``since``.

        ``from_=None`` matches any sender; a naive ``since`` is taken as UTC.
        """
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        with self._lock:
            records = list(self._records)
        return [
            SentRecord(
                sid=record.receipt.sid,
                to=record.message.to,
                from_=record.message.from_,
                body=record.message.body,
                num_media=len(record.message.media),
                status=record.receipt.status,
                date_created=record.created,
            )
            for record in records
            if record.message.to == to
            and (from_ is None or record.message.from_ == from_)
            and record.created >= since
        ]


def _segments(body: str) -> int | None:
    if not body:
        return None
    try:
        from textwire.messages import segment_info
    except ImportError:  # pragma: no cover - messages.py not there yet
        return None
    return segment_info(body).segments

"""The Transport interface: how one outbound message leaves textwire."""

from __future__ import annotations

import abc
import dataclasses
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from textwire.errors import SendError, TemporarySendError
from textwire.phone import mask

__all__ = ["OutboundMessage", "SendReceipt", "SentRecord", "Transport"]

logger = logging.getLogger("textwire.transport")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OutboundMessage:
    """One message to send: exactly one Twilio ``messages.create`` call.

    ``to`` is E.164 (or ``whatsapp:+…``). Exactly one of ``from_`` and
    ``messaging_service_sid`` is set. ``media`` holds absolute http(s) URLs.
    ``outbox_id`` identifies the outbox row, so a status callback can find its
    message even before Twilio's SID is stored.
    """

    to: str
    body: str = ""
    media: tuple[str, ...] = ()
    from_: str | None = None
    messaging_service_sid: str | None = None
    outbox_id: int | None = None
    status_callback: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SendReceipt:
    """What Twilio answered to an accepted message."""

    sid: str
    status: str = "queued"
    num_segments: int | None = None
    num_media: int | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SentRecord:
    """A message as Twilio lists it, for reconciliation after an ambiguous send."""

    sid: str
    to: str
    from_: str | None
    body: str
    num_media: int
    status: str
    date_created: datetime | None


class Transport(abc.ABC):
    """Delivers outbound messages to one provider.

    Implement ``_send``; callers use ``send``, which logs every attempt (numbers
    masked) and turns any unexpected exception into ``TemporarySendError`` so the
    worker sees only typed errors::

        class EchoTransport(Transport):
            name = "echo"

            def _send(self, message):
                print(message.body)
                return SendReceipt(sid="SM" + "0" * 32)
    """

    name: ClassVar[str] = "transport"

    def send(self, message: OutboundMessage) -> SendReceipt:
        """Send one message. Do not override; implement ``_send``.

        Raises:
            PermanentSendError: retrying cannot help.
            TemporarySendError: retry later; ``RateLimited`` carries ``retry_after``.
            AmbiguousSendError: the request may have reached the provider.
        """
        started = time.perf_counter()
        try:
            receipt = self._send(message)
        except SendError as exc:
            logger.warning(
                "send failed to=%s outbox=%s code=%s error=%s (%.0f ms)",
                mask(message.to),
                message.outbox_id,
                exc.code,
                type(exc).__name__,
                (time.perf_counter() - started) * 1000,
            )
            raise
        except Exception as exc:
            logger.exception(
                "send crashed to=%s outbox=%s", mask(message.to), message.outbox_id
            )
            raise TemporarySendError(
                f"unexpected {type(exc).__name__} in {self.name} transport"
            ) from exc
        logger.info(
            "send accepted sid=%s to=%s outbox=%s status=%s (%.0f ms)",
            receipt.sid,
            mask(message.to),
            message.outbox_id,
            receipt.status,
            (time.perf_counter() - started) * 1000,
        )
        return receipt

    @abc.abstractmethod
    def _send(self, message: OutboundMessage) -> SendReceipt:
        """Hand one message to the provider and return its receipt."""

    def find_sent(
        self, *, to: str, from_: str | None, since: datetime
    ) -> Sequence[SentRecord]:
        """Messages the provider holds to ``to`` created at or after ``since``.

        Used to reconcile after an ``AmbiguousSendError``. The default knows of
        nothing, which makes the worker send again.
        """
        return ()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

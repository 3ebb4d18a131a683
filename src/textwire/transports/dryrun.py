"""DryRunTransport: sends nothing, shows what would have been sent."""

from __future__ import annotations

import logging

from textwire.phone import mask
from textwire.transports.base import OutboundMessage, SendReceipt
from textwire.transports.fake import FakeTransport

__all__ = ["DryRunTransport"]

logger = logging.getLogger("textwire.dryrun")


class DryRunTransport(FakeTransport):
    """A ``FakeTransport`` that logs each message, body and media included.

    Used by ``textwire run --dry-run`` to try a bot with no Twilio account.
    """

    name = "dry-run"

    def _send(self, message: OutboundMessage) -> SendReceipt:
        receipt = super()._send(message)
        logger.info(
            "dry run, not sent: to=%s from=%s body=%r media=%s",
            mask(message.to),
            message.from_ or message.messaging_service_sid,
            message.body,
            list(message.media),
        )
        return receipt

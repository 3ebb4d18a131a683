"""How outbound messages leave textwire.

``TwilioTransport`` is not imported here, so importing this package never loads
the twilio SDK: ``from textwire.transports.twilio import TwilioTransport``.
"""

from __future__ import annotations

from textwire.transports.base import (
    OutboundMessage,
    SendReceipt,
    SentRecord,
    Transport,
)
from textwire.transports.fake import FakeTransport

__all__ = [
    "FakeTransport",
    "OutboundMessage",
    "SendReceipt",
    "SentRecord",
    "Transport",
]

"""Per-sender throughput: how fast Twilio sends from each kind of sender.

Twilio queues what a sender cannot send at once (for hours), then fails it
with 30001; pacing ourselves keeps that queue empty, keeps the order of
replies, and makes a 429 the exception. Rates are in message segments per
second (a long code releases one segment a second), from Twilio's documented
defaults; override them with ``TEXTWIRE_RATE_LIMIT_MPS``.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from textwire.config import Settings

__all__ = ["DEFAULT_MPS", "SenderKind", "send_cost", "sender_ceiling", "sender_kind"]

SenderKind = Literal[
    "long_code", "toll_free", "short_code", "alphanumeric", "messaging_service"
]

DEFAULT_MPS: dict[SenderKind, float] = {
    "long_code": 1.0,  # US/CA local numbers: 1 segment/s
    "toll_free": 3.0,  # US/CA toll-free: 3 MPS by default
    "short_code": 30.0,  # 30 MPS (more on request)
    "alphanumeric": 10.0,  # alphanumeric sender IDs: 10 MPS
    # A Messaging Service spreads over its senders; Twilio queues per sender,
    # so pace at one long code's rate unless told otherwise.
    "messaging_service": 1.0,
}


@functools.lru_cache(maxsize=1024)
def sender_kind(sender: str) -> SenderKind:
    """What kind of sender ``sender`` is (an E.164 number, short code, ID or MG…)."""
    if sender.startswith("MG") and len(sender) == 34:
        return "messaging_service"
    if sender.isdigit() and len(sender) <= 8:
        return "short_code"
    if not sender.startswith(("+", "whatsapp:")):
        return "alphanumeric"
    import phonenumbers

    try:
        number = phonenumbers.parse(sender.removeprefix("whatsapp:"))
    except phonenumbers.NumberParseException:
        return "long_code"
    if phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.TOLL_FREE:
        return "toll_free"
    return "long_code"


def send_cost(sender: str, segments: int, mps: float | None = None) -> float:
    """Seconds of ``sender``'s capacity one message of ``segments`` uses."""
    rate = mps if mps is not None else DEFAULT_MPS[sender_kind(sender)]
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError("a rate limit must be a positive number of segments/s")
    return max(1, segments) / rate


def sender_ceiling(settings: Settings) -> float:
    """Segments per second the configured sender may send: the pace the send
    worker sizes its concurrency for."""
    if settings.rate_limit_mps is not None:
        return settings.rate_limit_mps
    sender = settings.twilio_messaging_service_sid or settings.twilio_phone_number
    return DEFAULT_MPS[sender_kind(sender)] if sender else DEFAULT_MPS["long_code"]

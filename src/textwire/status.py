"""Message delivery statuses: the order they move in, and which are final.

Twilio reports a message's progress through status callbacks that may arrive
late or out of order (a ``sent`` after ``delivered``). A status only ever moves
forward, so the last word is the furthest one. Plain Python: the storage layer,
the console and the phone page all rank statuses here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["FINAL", "STATUS_RANK", "advances", "lower_than", "rank"]

STATUS_RANK: Mapping[str, int] = MappingProxyType(
    {
        "pending": 0,  # in textwire's outbox, not yet at Twilio
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
)
"""Rank of each status Twilio reports (and textwire's own ``pending``)."""

FINAL = frozenset(s for s, r in STATUS_RANK.items() if r >= 4)
"""Statuses after which nothing more happens to the message but ``read``."""


def rank(status: str) -> int | None:
    """The rank of ``status``; ``None`` for one Twilio has not documented."""
    return STATUS_RANK.get(status)


def advances(old: str | None, new: str) -> bool:
    """Whether a message in ``old`` may move to ``new`` (never backwards)."""
    new_rank = STATUS_RANK.get(new)
    if new_rank is None:
        return False
    old_rank = STATUS_RANK.get(old or "pending", 0)
    return new_rank > old_rank


def lower_than(status: str) -> tuple[str, ...]:
    """Every status ranked below ``status``: the ones it may replace."""
    new_rank = STATUS_RANK.get(status)
    if new_rank is None:
        return ()
    return tuple(s for s, r in STATUS_RANK.items() if r < new_rank)

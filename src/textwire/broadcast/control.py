"""Pausing, resuming and cancelling a broadcast, cancelling scheduled
messages, and how far a broadcast got: the one set of rules behind
``textwire broadcast pause|resume|cancel``, ``textwire scheduled cancel`` and
the operator console's buttons::

    change = pause(store, 3, now=now)     # BroadcastError when not allowed
    print(change.message)                 # "broadcast #3 paused"
    (result,) = cancel_scheduled(store, [12], now=now)
    result.cancelled, result.reason       # False, "it was already sent (…)"
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from textwire.errors import BroadcastError

if TYPE_CHECKING:
    from textwire.storage.sql import SqlStore

__all__ = [
    "Change",
    "ImportUnfinished",
    "ScheduledCancel",
    "cancel",
    "cancel_scheduled",
    "finished",
    "pause",
    "resume",
    "why_not_cancelled",
]


class ImportUnfinished(BroadcastError):
    """Resuming a broadcast still ``importing``: only reading its file again
    (:func:`textwire.broadcast.service.import_rows`) lets it go on."""


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """What a pause, resume or cancel came to.

    Attributes:
        broadcast_id: the broadcast.
        changed: False when it was in that state already (nothing done).
        message: one line for people.
        cancelled: how many waiting rows a cancel cancelled.
    """

    broadcast_id: int
    changed: bool
    message: str
    cancelled: int = 0


def pause(store: SqlStore, broadcast_id: int, *, now: datetime) -> Change:
    """Stop claiming a sending broadcast's rows (those being sent finish).

    Raises:
        BroadcastError: no such broadcast, or it is not sending.
    """
    if store.broadcasts.move(broadcast_id, "paused", only_from=("sending",), now=now):
        return Change(broadcast_id, True, f"broadcast #{broadcast_id} paused")
    status = store.broadcasts.get(broadcast_id)["status"]
    if status == "paused":
        return Change(
            broadcast_id, False, f"broadcast #{broadcast_id} is paused already"
        )
    raise BroadcastError(
        f"broadcast #{broadcast_id} is {status}: only one sending pauses"
    )


def resume(store: SqlStore, broadcast_id: int, *, now: datetime) -> Change:
    """Let a paused broadcast go on sending.

    Raises:
        ImportUnfinished: it is still importing (its import was cut short,
            or runs right now).
        BroadcastError: no such broadcast, or it was cancelled.
    """
    if store.broadcasts.move(broadcast_id, "sending", only_from=("paused",), now=now):
        return Change(broadcast_id, True, f"broadcast #{broadcast_id} resumed")
    b = store.broadcasts.get(broadcast_id)
    if b["status"] == "cancelled":
        raise BroadcastError(
            f"broadcast #{broadcast_id} was cancelled: it cannot be resumed"
        )
    if b["status"] == "importing":
        raise ImportUnfinished(
            f"broadcast #{broadcast_id} is still importing ({b['imported_rows']:,} "
            f"rows so far): if its import was cut short, `textwire broadcast resume "
            f"{broadcast_id}` reads its file again and finishes it"
        )
    return Change(broadcast_id, False, f"broadcast #{broadcast_id} is sending already")


def cancel(store: SqlStore, broadcast_id: int, *, now: datetime) -> Change:
    """Cancel every row of a broadcast not yet sent (rows in flight finish:
    they may be at Twilio already).

    Raises:
        BroadcastError: no such broadcast.
    """
    store.broadcasts.get(broadcast_id)
    count = store.broadcasts.cancel(broadcast_id, now=now)
    if count is None:
        return Change(
            broadcast_id, False, f"broadcast #{broadcast_id} was cancelled already"
        )
    return Change(
        broadcast_id,
        True,
        f"broadcast #{broadcast_id} cancelled: {count:,} messages not sent",
        cancelled=count,
    )


def finished(progress: Mapping[str, int]) -> int:
    """Of a broadcast's :meth:`~textwire.storage.broadcasts.SqlBroadcasts.progress`,
    the rows done with: sent, failed or cancelled (the progress bar's)."""
    return progress["sent"] + progress["failed"] + progress["cancelled"]


# -- scheduled messages ------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduledCancel:
    """What cancelling one outbox row came to.

    Attributes:
        outbox_id: the row.
        state: its status afterwards (``cancelled``, or what it was:
            ``sent``, ``sending`` …); ``None`` when there is no such row.
        reason: why it was not cancelled (empty when it was).
    """

    outbox_id: int
    state: str | None
    reason: str = ""

    @property
    def cancelled(self) -> bool:
        return self.state == "cancelled"


def cancel_scheduled(
    store: SqlStore, ids: Sequence[int], *, now: datetime
) -> list[ScheduledCancel]:
    """Cancel outbox rows by id unless they are on their way already (through
    :meth:`~textwire.storage.outbox.SqlOutbox.cancel`), in the order given."""
    results = []
    for outbox_id, state in store.outbox.cancel(list(ids), now=now).items():
        reason = ""
        if state is None:
            reason = f"no outbox message #{outbox_id}"
        elif state != "cancelled":
            reason = why_not_cancelled(state, store.outbox.row(outbox_id) or {})
        results.append(ScheduledCancel(outbox_id, state, reason))
    return results


def why_not_cancelled(state: str | None, row: Mapping[str, Any]) -> str:
    """Why a row in ``state`` could not be cancelled, for people."""
    if state == "sent":
        return (
            f"it was already sent (SID {row.get('sid')}, {row.get('message_status')})"
        )
    if state in ("sending", "unknown"):
        return "it is being sent right now"
    if state == "failed":
        return f"it failed already ({row.get('last_error')})"
    if state == "twiml":
        return "it was answered in TwiML"
    return f"it is {state}"

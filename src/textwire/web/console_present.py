"""How the console words what the database holds: delivery states, error
codes with their reason and what to do, numbers as people write them, what
a search box entry means, and how far a broadcast got."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers

from textwire.broadcast.control import finished
from textwire.codes import CODES, more_info_url
from textwire.errors import InvalidPhoneNumber
from textwire.phone import normalize
from textwire.quiet import zones_for_number
from textwire.storage.console import CANCELLED, OutboxEntry, ThreadMessage

__all__ = [
    "BroadcastSummary",
    "Delivery",
    "Search",
    "broadcast_row_state",
    "broadcast_summary",
    "delivery",
    "display_number",
    "local_times",
    "outbox_state",
    "search",
]

# Inbound files the console shows inline; anything else is a download.
INLINE_TYPES = frozenset(
    {"image/jpeg", "image/jpg", "image/png", "image/gif", "image/webp"}
)


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """Where a message stands, for people.

    Attributes:
        state: a stable word for styling and tests (``queued``, ``sending``,
            ``sent``, ``delivered``, ``failed``, ``retrying``, ``held``,
            ``checking``, ``cancelled``, ``received`` …).
        label: the same for the eye.
        detail: one line on why, when there is more to say.
        code: Twilio's error code, when there is one.
        reason: the code's title (Twilio's error dictionary).
        action: what to do about it.
        docs: Twilio's page for the code.
    """

    state: str
    label: str
    detail: str = ""
    code: int | None = None
    reason: str = ""
    action: str = ""
    docs: str = ""


def _with_code(state: str, label: str, code: int | None, detail: str) -> Delivery:
    entry = CODES.get(code) if code is not None else None
    return Delivery(
        state=state,
        label=label,
        detail=detail,
        code=code,
        reason=entry.title if entry else "",
        action=entry.action if entry else "",
        docs=more_info_url(code) if code is not None else "",
    )


def _at(when: datetime | None) -> str:
    return when.strftime("%H:%M:%S") if when else ""


def _open_state(
    status: str,
    attempts: int,
    last_error: str | None,
    code: int | None,
    due: datetime | None,
    now: datetime,
) -> Delivery | None:
    """The state of a row still in textwire's outbox, or ``None`` when it left."""
    if status == "queued":
        if attempts and last_error:
            return _with_code(
                "retrying",
                "retrying",
                code,
                f"attempt {attempts} failed: {last_error}; next try at {_at(due)}",
            )
        if due is not None and due > now + timedelta(seconds=1):
            return Delivery("held", "held", f"waits until {_at(due)} (rate limit)")
        return Delivery("queued", "queued")
    if status == "sending":
        return Delivery("sending", "sending")
    if status == "unknown":
        return Delivery(
            "checking",
            "checking with Twilio",
            "the last attempt may have reached Twilio: it is looked up in "
            "Twilio's message list before anything is sent again",
        )
    if status == "failed":
        return _with_code("failed", "failed", code, last_error or "")
    if status == CANCELLED:
        return Delivery("cancelled", "cancelled", "cancelled by an operator")
    return None


def delivery(message: ThreadMessage, now: datetime) -> Delivery:
    """The delivery state of one message of a conversation."""
    if message.direction == "inbound":
        return Delivery("received", "received")
    if message.outbox_status is not None:
        state = _open_state(
            message.outbox_status,
            message.attempts,
            message.last_error,
            message.last_error_code or message.error_code,
            message.next_attempt_at,
            now,
        )
        if state is not None:
            return state
    status = message.status
    if status in ("failed", "undelivered"):
        return _with_code(status, status, message.error_code, "reported by Twilio")
    if status == "canceled":
        return Delivery("cancelled", "cancelled")
    if status == "pending":
        return Delivery("queued", "queued")
    return Delivery(status, status)


def outbox_state(entry: OutboxEntry, now: datetime) -> Delivery:
    """The state of an outbox row on the outbox page."""
    state = _open_state(
        entry.status,
        entry.attempts,
        entry.last_error,
        entry.last_error_code,
        entry.next_attempt_at,
        now,
    )
    if state is None:
        return Delivery(entry.status, entry.status)
    if entry.held_behind is not None and state.state in ("queued", "held"):
        return Delivery(
            "held",
            "held",
            f"waits for row {entry.held_behind} to the same number (sent in order)",
        )
    return state


def display_number(number: str) -> str:
    """``+14155550199`` as people write it: ``+1 415-555-0199``."""
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return number
    return str(
        phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Search:
    """What the search box asks for: a whole number (normalized), some of its
    digits, or text in the messages."""

    phone: str | None = None
    digits: str | None = None
    text: str | None = None


_NUMBERISH = re.compile(r"[\d\s()+.\-]+")


def search(raw: str, region: str) -> Search:
    """Read the search box: ``(415) 555-0199``, ``+1 415 555 0199`` and
    ``4155550199`` all find ``+14155550199``; ``0199`` finds numbers with
    those digits; anything else is text."""
    query = raw.strip()
    if not query:
        return Search()
    if _NUMBERISH.fullmatch(query):
        try:
            return Search(phone=normalize(query, region))
        except InvalidPhoneNumber:
            digits = re.sub(r"\D", "", query)
            if len(digits) >= 3:
                return Search(digits=digits)
    return Search(text=query[:200])


# -- broadcasts and scheduled messages -----------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class BroadcastSummary:
    """A broadcast as its page shows it.

    Attributes:
        state: ``importing``, ``sending``, ``paused``, ``cancelled``, or
            ``finished`` (sending, with nothing left to send).
        done: rows sent, failed or cancelled (the progress bar's value).
        total: its outbox rows.
        percent: ``done`` of ``total``, rounded down.
        actions: the buttons its state allows (``pause``, ``resume``,
            ``cancel``); the server checks again when one is pressed.
    """

    state: str
    done: int
    total: int
    percent: int
    actions: tuple[str, ...]


_ACTIONS = {
    "importing": ("cancel",),
    "sending": ("pause", "cancel"),
    "paused": ("resume", "cancel"),
}


def broadcast_summary(
    broadcast: Mapping[str, Any], progress: Mapping[str, int]
) -> BroadcastSummary:
    """The state, progress and buttons of one broadcast."""
    status = str(broadcast["status"])
    total = progress["total"]
    done = finished(progress)
    state = status
    if status == "sending" and total and progress["open"] == 0:
        state = "finished"
    return BroadcastSummary(
        state=state,
        done=done,
        total=total,
        percent=done * 100 // total if total else 0,
        actions=() if state == "finished" else _ACTIONS.get(status, ()),
    )


def broadcast_row_state(row: Mapping[str, Any], now: datetime) -> Delivery:
    """Where one message of a broadcast stands (a row of
    :meth:`~textwire.storage.broadcasts.SqlBroadcasts.recent`)."""
    status = row["status"]
    held, send_at = row["held_until"], row["send_at"]
    if status == "queued" and held is not None and held > now:
        return Delivery("held", "quiet hours", f"held until {_utc(held)}")
    if status == "queued" and send_at is not None and send_at > now:
        return Delivery("scheduled", "scheduled", f"for {_utc(send_at)}")
    if status == "sent":
        delivery = row["delivery"] or "sent"
        if delivery in ("failed", "undelivered"):
            return _with_code(
                delivery, delivery, row["error_code"], "reported by the carrier"
            )
        return Delivery(delivery, delivery)
    state = _open_state(
        status,
        row["attempts"],
        row["error"],
        row["error_code"],
        row["next_attempt_at"],
        now,
    )
    if state is not None and state.state == "cancelled":
        return Delivery("cancelled", "cancelled")
    return state or Delivery(status, status)


def _utc(when: datetime) -> str:
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def local_times(when: datetime, number: str, zone: str | None = None) -> str:
    """``when`` on the recipient's clock: ``Wed 09:00 America/Los_Angeles``
    (``zone`` when the row names one, else the number's zones, those with
    the same time together), or ``""`` when the number's zone is unknown."""
    zones = (zone,) if zone else zones_for_number(number)
    if zones == ("UTC",):
        return ""
    by_time: dict[str, list[str]] = {}
    for name in zones:
        by_time.setdefault(f"{when.astimezone(ZoneInfo(name)):%a %H:%M}", []).append(
            name
        )
    return " · ".join(
        f"{local} {names[0]}"
        + (f" (and {len(names) - 1} more zones)" if len(names) > 1 else "")
        for local, names in by_time.items()
    )

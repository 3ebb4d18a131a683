"""What a person does from the operator console, without Flask.

Reply to a contact as a person, hand a contact to a person or back to the
bot, retry a failed message, cancel a queued one; pause, resume or cancel
a broadcast and cancel a scheduled message (by the rules of the command
line's, :mod:`textwire.broadcast.control`). A reply goes the way a
bot's reply goes — the outbox, the opt-out refusal, the MMS policy and the
media-host check — and is marked as written by the operator. Each action
writes one line to the ``textwire.audit`` logger (who, what, which row;
numbers masked)::

    ids = operator_reply(store, contact="+14155550199", body="On it!",
                         settings=settings, operator="Sam")
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import cast

from textwire.broadcast import control
from textwire.config import Settings
from textwire.errors import BroadcastError, ConfigError, RecipientOptedOut
from textwire.handoff import HandoffChange
from textwire.media import MmsPolicy, apply_mms_policy, check_reply_media
from textwire.messages import Reply
from textwire.phone import mask, normalize_sender
from textwire.storage.sql import NewMessage, SqlStore

__all__ = [
    "audit",
    "cancel_broadcast",
    "cancel_message",
    "cancel_scheduled",
    "hand_back",
    "hand_off",
    "operator_reply",
    "pause_broadcast",
    "resume_broadcast",
    "retry_message",
]

audit = logging.getLogger("textwire.audit")
"""One line per operator action (reply, handoff, retry, cancel, login,
pause, resume)."""


def _sender(
    store: SqlStore, contact: str, settings: Settings
) -> tuple[str | None, str | None]:
    """``(from, messaging_service_sid)`` of a reply to ``contact``: the
    Messaging Service when one is configured, else the number the contact
    last texted, else ``TWILIO_PHONE_NUMBER``."""
    if settings.twilio_messaging_service_sid:
        return None, settings.twilio_messaging_service_sid
    number = store.console.bot_number_for(contact)
    if number:
        return number, None
    if settings.twilio_phone_number:
        return normalize_sender(
            settings.twilio_phone_number, settings.default_region
        ), None
    raise ConfigError(
        "no sender: set TWILIO_PHONE_NUMBER or TWILIO_MESSAGING_SERVICE_SID"
    )


def operator_reply(
    store: SqlStore,
    *,
    contact: str,
    body: str = "",
    media: Sequence[str] = (),
    settings: Settings,
    operator: str,
    now: datetime | None = None,
) -> list[int]:
    """Queue a person's reply to ``contact`` (E.164); its outbox ids.

    One id (text and media in one message), unless the MMS policy turned
    pictures for a phone without MMS into links that did not fit beside the
    text. The handoff's timeout starts again.

    Raises:
        InvalidMessage: the reply breaks one of Twilio's limits, or a media
            URL is on a private host.
        RecipientOptedOut: the contact replied STOP.
        ConfigError: no sender is configured.
    """
    reply = Reply(body, media)
    if not settings.allow_private_media:
        check_reply_media(reply, settings.public_url)
    parts = apply_mms_policy(contact, reply, cast(MmsPolicy, settings.mms_fallback))
    from_, service = _sender(store, contact, settings)
    at = now or datetime.now(UTC)
    with store.begin() as conn:
        if store.contacts.ensure(conn, contact, at):
            raise RecipientOptedOut(
                "the contact opted out (replied STOP): not sent. They can text "
                "START to opt back in."
            )
        ids = store.outbox.enqueue_many(
            conn,
            [
                NewMessage(
                    to=contact,
                    body=part.body,
                    media=part.media,
                    from_=from_,
                    messaging_service_sid=service,
                )
                for part in parts
            ],
            now=at,
        )
        store.console.mark_sent_by(conn, ids, operator)
        store.console.touch_handoff(conn, contact, at)
    audit.info(
        "operator=%r replied to=%s outbox=%s chars=%d media=%d",
        operator,
        mask(contact),
        ",".join(map(str, ids)),
        len(reply.body),
        len(reply.media),
    )
    return ids


def hand_off(
    store: SqlStore,
    *,
    contact: str,
    operator: str,
    note: str = "",
    now: datetime | None = None,
) -> None:
    """Hand ``contact`` to a person: the bot stops answering them."""
    store.console.set_handoff(
        contact,
        HandoffChange(active=True, note=note.strip()[:500], by=operator),
        now or datetime.now(UTC),
    )
    audit.info("operator=%r handed to a person contact=%s", operator, mask(contact))


def hand_back(
    store: SqlStore, *, contact: str, operator: str, now: datetime | None = None
) -> None:
    """Give ``contact`` back to the bot."""
    store.console.set_handoff(
        contact, HandoffChange(active=False, by=operator), now or datetime.now(UTC)
    )
    audit.info("operator=%r back to the bot contact=%s", operator, mask(contact))


def retry_message(
    store: SqlStore, outbox_id: int, *, operator: str, now: datetime | None = None
) -> bool:
    """Retry a failed outbox row through reconciliation (Twilio's message list
    is checked before anything is sent again); False when it is not failed."""
    done = store.console.retry(outbox_id, now or datetime.now(UTC))
    audit.info(
        "operator=%r retry outbox=%d %s",
        operator,
        outbox_id,
        "queued for reconciliation" if done else "refused: not failed",
    )
    return done


def cancel_message(
    store: SqlStore, outbox_id: int, *, operator: str, now: datetime | None = None
) -> bool:
    """Cancel a queued outbox row; False when it is not queued any more."""
    done = store.console.cancel(outbox_id, now or datetime.now(UTC))
    audit.info(
        "operator=%r cancel outbox=%d %s",
        operator,
        outbox_id,
        "cancelled" if done else "refused: not queued",
    )
    return done


# -- broadcasts and scheduled messages ------------------------------------------


def _broadcast_action(
    operator: str,
    action: str,
    broadcast_id: int,
    do: Callable[[], control.Change],
) -> control.Change:
    try:
        change = do()
    except BroadcastError as exc:
        audit.info(
            "operator=%r %s broadcast=%d refused: %s",
            operator,
            action,
            broadcast_id,
            exc,
        )
        raise
    if not change.changed:
        outcome = f"nothing to do: {change.message}"
    elif action == "cancel":
        outcome = f"done: {change.cancelled} rows cancelled"
    else:
        outcome = "done"
    audit.info(
        "operator=%r %s broadcast=%d %s", operator, action, broadcast_id, outcome
    )
    return change


def pause_broadcast(
    store: SqlStore, broadcast_id: int, *, operator: str, now: datetime | None = None
) -> control.Change:
    """Pause a sending broadcast (``textwire broadcast pause``).

    Raises:
        BroadcastError: no such broadcast, or it is not sending.
    """
    at = now or datetime.now(UTC)
    return _broadcast_action(
        operator,
        "pause",
        broadcast_id,
        lambda: control.pause(store, broadcast_id, now=at),
    )


def resume_broadcast(
    store: SqlStore, broadcast_id: int, *, operator: str, now: datetime | None = None
) -> control.Change:
    """Let a paused broadcast go on (a running worker sends it).

    Raises:
        ImportUnfinished: it is still importing: ``textwire broadcast
            resume`` finishes an import cut short (it reads the file).
        BroadcastError: no such broadcast, or it was cancelled.
    """
    at = now or datetime.now(UTC)
    return _broadcast_action(
        operator,
        "resume",
        broadcast_id,
        lambda: control.resume(store, broadcast_id, now=at),
    )


def cancel_broadcast(
    store: SqlStore, broadcast_id: int, *, operator: str, now: datetime | None = None
) -> control.Change:
    """Cancel every row of a broadcast not yet sent.

    Raises:
        BroadcastError: no such broadcast.
    """
    at = now or datetime.now(UTC)
    return _broadcast_action(
        operator,
        "cancel",
        broadcast_id,
        lambda: control.cancel(store, broadcast_id, now=at),
    )


def cancel_scheduled(
    store: SqlStore, outbox_id: int, *, operator: str, now: datetime | None = None
) -> control.ScheduledCancel:
    """Cancel a scheduled message (``textwire scheduled cancel``): what came
    of it, with the reason when it was too late."""
    (result,) = control.cancel_scheduled(
        store, [outbox_id], now=now or datetime.now(UTC)
    )
    audit.info(
        "operator=%r cancel scheduled outbox=%d %s",
        operator,
        outbox_id,
        "cancelled" if result.cancelled else f"refused: {result.reason}",
    )
    return result

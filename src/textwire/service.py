"""The ways a message enters the outbox: a reply to an inbound message (now
or scheduled by the handler), or a send of one's own (``textwire send``,
:func:`textwire.send_message`), now or at a given time."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, cast

from textwire import metrics
from textwire.config import Settings
from textwire.errors import ConfigError, RecipientOptedOut
from textwire.media import MmsPolicy, apply_mms_policy, check_reply_media
from textwire.mediastore import media_source_for
from textwire.messages import Reply
from textwire.phone import mask, normalize, normalize_sender
from textwire.storage.base import Store
from textwire.storage.inbox import ClaimedInbound
from textwire.storage.outbox import NewMessage

if TYPE_CHECKING:
    from textwire.bot import Bot, Outcome
    from textwire.context import AsyncRunner, HandleOptions, Scheduled
    from textwire.messages import Inbound

__all__ = [
    "InlineResult",
    "commit_outcome",
    "handle_inline",
    "queue_message",
    "reply_messages",
    "reply_sender",
    "scheduled_messages",
]

logger = logging.getLogger("textwire.inbound")


def reply_sender(to: str, settings: Settings) -> tuple[str | None, str | None]:
    """``(from, messaging_service_sid)`` of a reply to a message sent to ``to``.

    From the number the contact texted, unless a Messaging Service is
    configured to choose the sender.
    """
    if settings.twilio_messaging_service_sid:
        return None, settings.twilio_messaging_service_sid
    return to, None


def reply_messages(
    item: ClaimedInbound,
    replies: Sequence[Reply],
    settings: Settings,
    *,
    twiml: bool = False,
) -> list[NewMessage]:
    """The outbox rows for ``replies`` to the message of ``item``.

    A TwiML reply always comes from the number the contact texted.
    """
    msg = item.msg
    from_, service = (msg.to, None) if twiml else reply_sender(msg.to, settings)
    return [
        NewMessage(
            to=msg.from_,
            body=reply.body,
            media=reply.media,
            from_=from_,
            messaging_service_sid=service,
            in_reply_to=item.message_id,
        )
        for reply in replies
    ]


def scheduled_messages(
    item: ClaimedInbound, scheduled: Sequence[Scheduled], settings: Settings
) -> list[NewMessage]:
    """The outbox rows of a handler's messages for later (``ctx.schedule``):
    through the outbox and the worker (never TwiML), the MMS policy applied,
    held by the quiet hours of the settings."""
    msg = item.msg
    from_, service = reply_sender(msg.to, settings)
    policy = cast(MmsPolicy, settings.mms_fallback)
    return [
        NewMessage(
            to=msg.from_,
            body=part.body,
            media=part.media,
            from_=from_,
            messaging_service_sid=service,
            in_reply_to=item.message_id,
            send_at=entry.at,
            quiet_hours=settings.quiet_hours,
        )
        for entry in scheduled
        for part in apply_mms_policy(msg.from_, entry.reply, policy)
    ]


def commit_outcome(
    store: Store,
    item: ClaimedInbound,
    holder: str,
    outcome: Outcome,
    settings: Settings,
    *,
    now: datetime,
    twiml: bool = False,
) -> list[int] | None:
    """Commit what handling ``item`` came to, fenced by ``holder``'s claim:
    the outbox ids of its replies, or ``None`` when another worker had taken
    the row over (nothing written).

    Raises:
        StorageError: the database failed; nothing was written.
    """
    outbox_ids = store.inbox.complete(
        item,
        holder,
        now=now,
        replies=reply_messages(item, outcome.replies, settings, twiml=twiml),
        state_changes=outcome.state_changes,
        opt_out=outcome.opt_out,
        deliver=not twiml,
        handoff=outcome.handoff,
        later=scheduled_messages(item, outcome.scheduled, settings),
    )
    if outbox_ids is None:
        metrics.count_handled("lost")
        return None
    result = "timeout" if outcome.timed_out else "error" if outcome.failed else "ok"
    metrics.count_handled(
        result, keyword=outcome.keyword, replies=len(outbox_ids), twiml=twiml
    )
    logger.info(
        "inbound %s from=%s to=%s media=%d replies=%d%s%s",
        item.msg.sid,
        mask(item.msg.from_),
        mask(item.msg.to),
        len(item.msg.media),
        len(outbox_ids),
        f" by {outcome.route}" if outcome.route else "",
        " (in TwiML)" if twiml else "",
    )
    return outbox_ids


class InlineResult:
    """What the TwiML reply mode answers: the replies and their outbox ids
    (empty for a duplicate, whose first delivery got them)."""

    def __init__(
        self,
        replies: Sequence[Reply] = (),
        outbox_ids: Sequence[int] = (),
        *,
        duplicate: bool = False,
    ) -> None:
        self.replies = tuple(replies)
        self.outbox_ids = tuple(outbox_ids)
        self.duplicate = duplicate


def handle_inline(
    store: Store,
    bot: Bot,
    msg: Inbound,
    *,
    settings: Settings,
    options: HandleOptions,
    run_async: AsyncRunner,
    now: datetime | None = None,
) -> InlineResult:
    """The TwiML reply mode: record ``msg``, run the bot in this request and
    commit its effects, the replies recorded as answered in TwiML.

    The same middleware and the same fenced commit as the worker, outside the
    write transaction. The row is recorded already claimed by this request;
    if the request dies, a worker takes it when the claim's lease (the
    handler timeout, and a margin) runs out, and answers through the REST API.
    """
    at = now or datetime.now(UTC)
    holder = f"twiml:{uuid.uuid4().hex}"
    lease = timedelta(seconds=settings.handler_timeout + 30)
    inbox_id = store.inbox.record(msg, at, claim_for=holder, lease=lease)
    metrics.count_inbound(duplicate=inbox_id is None)
    if inbox_id is None:
        logger.info("inbound %s from=%s duplicate", msg.sid, mask(msg.from_))
        return InlineResult(duplicate=True)
    item = store.inbox.held(inbox_id)
    if item is None:  # pragma: no cover - the row was just written
        return InlineResult()
    if options.media_source is None:
        options = dataclasses.replace(options, media_source=media_source_for(settings))
    started = time.perf_counter()
    outcome = bot.handle(
        item.msg,
        state_store=store.states.reader(),
        opted_out=item.opted_out,
        now=at,
        options=options,
        run_async=run_async,
        handoff=item.handoff,
    )
    metrics.HANDLER_DURATION.observe(time.perf_counter() - started)
    outbox_ids = commit_outcome(
        store, item, holder, outcome, settings, now=at, twiml=True
    )
    if outbox_ids is None:
        return InlineResult()
    return InlineResult(outcome.replies, outbox_ids)


def queue_message(
    store: Store,
    *,
    to: str,
    body: str = "",
    media: Sequence[str] = (),
    settings: Settings,
    now: datetime | None = None,
    at: datetime | str | None = None,
) -> list[int]:
    """Queue one outbound message (``textwire send``, ``send_message``);
    return its outbox ids.

    One id, unless the MMS policy turned pictures for a phone without MMS
    into links that did not fit beside the text (then two, in order). With
    ``at`` (an aware datetime, or text such as ``"+2h"`` or ``"tomorrow
    09:00"`` read in the recipient's local time) it is a scheduled message:
    sent then, not before, and held by the settings' quiet hours.

    Raises:
        InvalidPhoneNumber: ``to`` is not a valid number.
        InvalidMessage: the message breaks one of Twilio's limits.
        InvalidSendTime: ``at`` is unreadable, past, or over a year ahead.
        ConfigError: no sender is configured.
        RecipientOptedOut: the recipient replied STOP.
    """
    reply = Reply(body, media)
    if not settings.allow_private_media:
        check_reply_media(reply, settings.public_url)
    recipient = normalize(to, settings.default_region)
    clock = now or datetime.now(UTC)
    send_at = _send_at(at, recipient, clock)
    parts = apply_mms_policy(recipient, reply, cast(MmsPolicy, settings.mms_fallback))
    from_: str | None = None
    service = settings.twilio_messaging_service_sid
    if not service:
        if not settings.twilio_phone_number:
            raise ConfigError(
                "no sender: set TWILIO_PHONE_NUMBER or TWILIO_MESSAGING_SERVICE_SID"
            )
        from_ = normalize_sender(settings.twilio_phone_number, settings.default_region)
    with store.begin() as conn:
        if store.contacts.ensure(conn, recipient, clock):
            raise RecipientOptedOut(
                f"{mask(recipient)} opted out (replied STOP): not sent. They can "
                "text START to opt back in."
            )
        return store.outbox.enqueue_many(
            conn,
            [
                NewMessage(
                    to=recipient,
                    body=part.body,
                    media=part.media,
                    from_=from_,
                    messaging_service_sid=service,
                    send_at=send_at,
                    # Quiet hours hold what was scheduled, not a send for now.
                    quiet_hours=settings.quiet_hours if send_at else None,
                )
                for part in parts
            ],
            now=clock,
        )


def _send_at(
    at: datetime | str | None, recipient: str, now: datetime
) -> datetime | None:
    from textwire.quiet import zones_for_number
    from textwire.when import check_send_time, parse_when

    if at is None:
        return None
    if isinstance(at, datetime):
        return check_send_time(at, now)
    return parse_when(at, now=now, zones=zones_for_number(recipient))

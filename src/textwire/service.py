"""The two ways a message enters the outbox: a reply to a webhook, or a send."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import cast

from textwire.bot import Bot
from textwire.config import Settings
from textwire.errors import ConfigError, RecipientOptedOut
from textwire.media import MmsPolicy, apply_mms_policy, check_media_host
from textwire.messages import Inbound, Reply
from textwire.optout import classify
from textwire.phone import mask, normalize, normalize_sender
from textwire.storage.sql import SqlStore

__all__ = ["InboundResult", "handle_inbound", "queue_message"]

logger = logging.getLogger("textwire.inbound")


@dataclasses.dataclass(frozen=True, slots=True)
class InboundResult:
    """What happened to one webhook delivery.

    ``keyword`` is the opt-out keyword the message was (``stop``, ``start``),
    handled by textwire itself: Twilio answers those, the bot does not.
    """

    message_id: int | None
    duplicate: bool
    replies: tuple[Reply, ...] = ()
    outbox_ids: tuple[int, ...] = ()
    keyword: str | None = None


def handle_inbound(
    store: SqlStore,
    bot: Bot,
    msg: Inbound,
    *,
    settings: Settings,
    public_url: str | None,
    now: datetime | None = None,
    deliver: bool = True,
) -> InboundResult:
    """Record ``msg``, run the bot, and queue its replies, in one transaction.

    A MessageSid seen before (including a delivery racing this one) stops at
    the insert: no handler runs, nothing is queued.

    With ``deliver=False`` (the ``twiml`` reply mode) the replies are recorded
    but never handed to the send worker, because the caller answers them in
    TwiML. They are stored as coming from the number the contact texted, in
    outbox rows that are already final. ``InboundResult.outbox_ids`` pairs
    with ``replies``.
    """
    now = now or datetime.now(UTC)
    with store.begin() as conn:
        message_id = store.record_inbound(conn, msg, now)
        if message_id is None:
            logger.info(
                "inbound %s from=%s duplicate: already handled",
                msg.sid,
                mask(msg.from_),
            )
            return InboundResult(message_id=None, duplicate=True)
        opted_out = store.ensure_contact(conn, msg.from_, now)
        keyword = (
            classify(msg.body, msg.params.get("OptOutType"))
            if bot.handle_opt_out
            else None
        )
        if keyword == "stop" or (keyword == "start" and opted_out):
            store.set_opt_out(conn, msg.from_, keyword == "stop", now)
            logger.info(
                "inbound %s from=%s: %s, contact opted %s; no bot reply",
                msg.sid,
                mask(msg.from_),
                msg.body.strip().upper() or keyword.upper(),
                "out" if keyword == "stop" else "back in",
            )
            return InboundResult(
                message_id=message_id, duplicate=False, keyword=keyword
            )
        if opted_out and bot.handle_opt_out:
            logger.info(
                "inbound %s from=%s: contact has opted out (STOP); stored, no reply "
                "until they text START",
                msg.sid,
                mask(msg.from_),
            )
            return InboundResult(message_id=message_id, duplicate=False)
        replies = bot.dispatch(
            msg,
            state_store=store.state_store(conn),
            now=now,
            public_url=public_url,
            default_apology=settings.apology,
            check_reply=media_checker(settings, public_url),
        )
        policy = cast(MmsPolicy, settings.mms_fallback)
        replies = [
            part
            for reply in replies
            for part in apply_mms_policy(msg.from_, reply, policy)
        ]
        # A TwiML reply always comes from the number the contact texted.
        from_, service = _reply_sender(msg, settings) if deliver else (msg.to, None)
        outbox_ids = tuple(
            store.enqueue(
                conn,
                to=msg.from_,
                body=reply.body,
                media=reply.media,
                from_=from_,
                messaging_service_sid=service,
                now=now,
                in_reply_to=message_id,
                deliver=deliver,
            )
            for reply in replies
        )
    logger.info(
        "inbound %s from=%s to=%s media=%d replies=%d%s",
        msg.sid,
        mask(msg.from_),
        mask(msg.to),
        len(msg.media),
        len(replies),
        "" if deliver else " (in TwiML)",
    )
    return InboundResult(
        message_id=message_id,
        duplicate=False,
        replies=tuple(replies),
        outbox_ids=outbox_ids,
    )


def media_checker(
    settings: Settings, public_url: str | None
) -> Callable[[Reply], None] | None:
    """Refuse media URLs Twilio cannot fetch (private hosts), except the bot's own."""
    if settings.allow_private_media:
        return None
    own = public_url.rstrip("/") + "/" if public_url else None

    def check(reply: Reply) -> None:
        for url in reply.media:
            if own is None or not url.startswith(own):
                check_media_host(url)

    return check


def _reply_sender(msg: Inbound, settings: Settings) -> tuple[str | None, str | None]:
    # Answer from the number the contact texted, unless a Messaging Service
    # is configured to choose the sender.
    if settings.twilio_messaging_service_sid:
        return None, settings.twilio_messaging_service_sid
    return msg.to, None


def queue_message(
    store: SqlStore,
    *,
    to: str,
    body: str = "",
    media: Sequence[str] = (),
    settings: Settings,
    now: datetime | None = None,
) -> list[int]:
    """Queue one outbound message (``textwire send``); return its outbox ids.

    One id, unless the MMS policy turned pictures for a phone without MMS
    into links that did not fit beside the text (then two, in order).

    Raises:
        InvalidPhoneNumber: ``to`` is not a valid number.
        InvalidMessage: the message breaks one of Twilio's limits.
        ConfigError: no sender is configured.
        RecipientOptedOut: the recipient replied STOP.
    """
    reply = Reply(body, media)
    check = media_checker(settings, settings.public_url)
    if check is not None:
        check(reply)
    recipient = normalize(to, settings.default_region)
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
        if store.ensure_contact(conn, recipient, now or datetime.now(UTC)):
            raise RecipientOptedOut(
                f"{mask(recipient)} opted out (replied STOP): not sent. They can "
                "text START to opt back in."
            )
        return [
            store.enqueue(
                conn,
                to=recipient,
                body=part.body,
                media=part.media,
                from_=from_,
                messaging_service_sid=service,
                now=now or datetime.now(UTC),
            )
            for part in parts
        ]

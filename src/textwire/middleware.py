"""Middleware: a chain around the handler, and the three textwire installs.

A middleware is called with the message, the context and ``next``; calling
``next()`` runs the rest of the chain (the handler last) and returns its
replies. A middleware may act before (and not call ``next`` at all, to stop
the message there), after (change or check the replies), or both::

    def timing(msg: Inbound, ctx: Context, next: Next) -> list[Reply]:
        started = time.perf_counter()
        replies = next()
        ms = (time.perf_counter() - started) * 1000
        ctx.logger.info("%s took %.0f ms", msg.sid, ms)
        return replies

    bot.use(timing)

A middleware that returns ``None`` leaves the replies as ``next()`` gave them
(none, if it never called ``next``); any other return value (``str``,
``Reply``, a list) replaces them. Middleware are plain functions and run in
the worker's handler threads: keep them quick, and await slow work in an
``async def`` handler instead.

``Bot`` installs, outermost first:

* :func:`opt_out` — STOP opts the contact out, START back in, and an opted-out
  contact's messages stop here: no handler ever sees them (``Bot(...,
  handle_opt_out=False)`` leaves it out, for a Messaging Service whose Advanced
  Opt-Out handles the keywords);
* :func:`handoff` — a contact handed to a person (``ctx.handoff()`` or the
  operator console) gets no bot reply until they are handed back, or until
  ``TEXTWIRE_HANDOFF_TIMEOUT`` passed (then the bot answers again);
* :func:`mms_policy` — pictures for a phone without MMS become links, are
  dropped, or go anyway (``TEXTWIRE_MMS_FALLBACK``);
* :func:`media_hosts` — a reply whose media URL points at a private host
  (which Twilio could never fetch) fails like a handler error, so the sender
  gets the apology instead of silence.

The same chain runs in the worker, in the TwiML reply mode and in
``textwire.testing.BotTester``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from textwire.handoff import HandoffChange
from textwire.media import MmsPolicy, apply_mms_policy, check_reply_media
from textwire.optout import classify
from textwire.phone import mask

if TYPE_CHECKING:
    from textwire.context import Context
    from textwire.messages import Inbound, Reply
    from textwire.routing import HandlerResult

__all__ = ["Middleware", "Next", "handoff", "media_hosts", "mms_policy", "opt_out"]

logger = logging.getLogger("textwire.inbound")

Next: TypeAlias = "Callable[[], list[Reply]]"
Middleware: TypeAlias = "Callable[[Inbound, Context, Next], HandlerResult]"


def opt_out(msg: Inbound, ctx: Context, next: Next) -> list[Reply]:
    """STOP / START as Twilio matches them, before any handler runs."""
    keyword = classify(msg.body, msg.params.get("OptOutType"))
    if keyword == "stop" or (keyword == "start" and ctx.opted_out):
        ctx.set_opt_out(keyword == "stop")
        ctx.keyword = keyword
        logger.info(
            "inbound %s from=%s: %s, contact opted %s; no bot reply",
            msg.sid,
            mask(msg.from_),
            msg.body.strip().upper() or keyword.upper(),
            "out" if keyword == "stop" else "back in",
        )
        return []
    if ctx.opted_out:
        logger.info(
            "inbound %s from=%s: contact has opted out (STOP); stored, no reply "
            "until they text START",
            msg.sid,
            mask(msg.from_),
        )
        return []
    return next()


def handoff(msg: Inbound, ctx: Context, next: Next) -> list[Reply]:
    """Keep the bot silent for a contact who is with a person.

    After the opt-out middleware, so STOP and START still apply. A handoff
    older than ``TEXTWIRE_HANDOFF_TIMEOUT`` (since the person's last reply)
    ends here: the contact goes back to the bot, which answers this message.
    """
    state = ctx.handoff_state
    if state is None:
        return next()
    if state.expired(ctx.now, ctx.options.handoff_timeout):
        ctx.handoff_change = HandoffChange(active=False, by="timeout")
        logger.info(
            "inbound %s from=%s: no reply from a person within "
            "TEXTWIRE_HANDOFF_TIMEOUT; back to the bot",
            msg.sid,
            mask(msg.from_),
        )
        return next()
    logger.info(
        "inbound %s from=%s: with a person (handed off); stored for the console, "
        "no bot reply",
        msg.sid,
        mask(msg.from_),
    )
    return []


def mms_policy(msg: Inbound, ctx: Context, next: Next) -> list[Reply]:
    """Apply the MMS fallback policy to every reply for this contact."""
    policy: MmsPolicy = ctx.options.mms_fallback  # type: ignore[assignment]
    return [
        part for reply in next() for part in apply_mms_policy(msg.from_, reply, policy)
    ]


def media_hosts(msg: Inbound, ctx: Context, next: Next) -> list[Reply]:
    """Refuse media URLs Twilio cannot fetch (private hosts), except the bot's
    own (under its public URL).

    Raises:
        InvalidMessage: naming the URL; the bot answers with the apology.
    """
    replies = next()
    if not ctx.options.allow_private_media:
        for reply in replies:
            check_reply_media(reply, ctx.public_url)
    return replies


BUILT_IN: tuple[tuple[str, Middleware], ...] = (
    ("opt_out", opt_out),
    ("handoff", handoff),
    ("mms_policy", mms_policy),
    ("media_hosts", media_hosts),
)
"""The middleware ``Bot`` installs, outermost first, by name."""

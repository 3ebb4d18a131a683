"""What a handler receives beside the message, and what it leaves behind."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

from textwire.attachments import MediaFile, MediaSource
from textwire.config import DEFAULT_APOLOGY, Settings
from textwire.conversation import ConversationState
from textwire.handoff import HandoffChange, HandoffState
from textwire.messages import Inbound, Reply

__all__ = ["AsyncRunner", "BotInfo", "Context", "HandleOptions", "Scheduled", "When"]

T = TypeVar("T")

When = datetime | timedelta | str
"""A send time: an aware ``datetime``, a ``timedelta`` from now, or text
(``"+2h"``, ``"tomorrow 09:00"`` in the contact's local time; see
:mod:`textwire.when`)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Scheduled:
    """A message to the contact for later: ``reply`` is sent at ``at`` (UTC),
    not before (and, with quiet hours on, not during them)."""

    reply: Reply
    at: datetime


AsyncRunner = Callable[[Awaitable[Any]], Any]
"""Runs an awaitable (an ``async def`` handler's) to completion and returns its
result: the worker runs it on its own event loop, ``BotTester`` on one of its
own."""


class BotInfo(Protocol):
    """The bot as a handler sees it (``ctx.bot``)."""

    @property
    def name(self) -> str: ...

    @property
    def logger(self) -> logging.Logger: ...


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HandleOptions:
    """How one message is handled: the settings the middleware read.

    Attributes:
        public_url: base URL of ``ctx.media_url`` (and the bot's own media,
            which the media-host check lets through).
        apology: what the sender gets when a handler raises; ``""`` sends
            nothing. The bot's own ``apology`` wins when it has one.
        mms_fallback: ``link``, ``drop`` or ``send`` for pictures to a phone
            without MMS (``textwire.media``).
        allow_private_media: let media URLs on private hosts through.
        handoff_timeout: seconds after which a contact handed to a person
            goes back to the bot (0: never).
        media_source: fetches inbound media for ``ctx.fetch_media`` (the
            worker sets one up from the settings).
    """

    public_url: str | None = None
    apology: str = DEFAULT_APOLOGY
    mms_fallback: str = "link"
    allow_private_media: bool = False
    handoff_timeout: float = 86400.0
    media_source: MediaSource | None = dataclasses.field(default=None, compare=False)

    @classmethod
    def from_settings(
        cls, settings: Settings, public_url: str | None = None
    ) -> HandleOptions:
        """The options ``settings`` give, with another public URL if given."""
        return cls(
            public_url=public_url if public_url is not None else settings.public_url,
            apology=settings.apology,
            mms_fallback=settings.mms_fallback,
            allow_private_media=settings.allow_private_media,
            handoff_timeout=settings.handoff_timeout,
        )


class Context:
    """Per-message context handed to every handler (and middleware) as ``ctx``.

    Attributes:
        msg: the inbound message being handled.
        bot: the bot handling it (``ctx.bot.name``, ``ctx.bot.logger``).
        contact: the sender's number, E.164.
        state: this contact's conversation state (``get``/``set``/``update``/``clear``).
        match: the ``re.Match`` of the regex filter that selected the handler.
        logger: the bot's logger.
        now: when the message is being handled (UTC).
        opted_out: whether the contact had opted out (STOP) when this message
            arrived.
        handoff_state: the :class:`~textwire.handoff.HandoffState` when the
            contact was with a person as this message arrived, else ``None``.
        options: the :class:`HandleOptions` this message is handled with.

    Nothing a handler does through ``ctx`` touches the database while it runs:
    replies, state changes and an opt-out are collected here and committed
    together once the handler returns, exactly once even if the handler itself
    runs twice (a worker died mid-handler). Use ``msg.sid`` as the
    idempotency key for the handler's own side effects.
    """

    def __init__(
        self,
        msg: Inbound,
        *,
        bot: BotInfo,
        state: ConversationState,
        public_url: str | None = None,
        options: HandleOptions | None = None,
        opted_out: bool = False,
        now: datetime | None = None,
        run_async: AsyncRunner | None = None,
        handoff: HandoffState | None = None,
    ) -> None:
        self.msg = msg
        self.bot = bot
        self.contact = msg.from_
        self.state = state
        self.match: re.Match[str] | None = None
        self.logger: logging.Logger = bot.logger
        self.options = options or HandleOptions(public_url=public_url)
        self.public_url = (
            public_url if public_url is not None else (self.options.public_url)
        )
        self.opted_out = opted_out
        self.now = now or datetime.now(UTC)
        self.replies: list[Reply] = []
        self.scheduled: list[Scheduled] = []
        # Set by the opt-out middleware: True opts the contact out, False back
        # in; the keyword it matched.
        self.opt_out_change: bool | None = None
        self.keyword: str | None = None
        self.handoff_state = handoff
        # Set by ctx.handoff() (to a person) or the handoff middleware (back
        # to the bot when the handoff timed out).
        self.handoff_change: HandoffChange | None = None
        # Set by the bot when a handler raised (its replies are the apology).
        self.failed = False
        self._run_async = run_async

    def reply(
        self,
        body: str = "",
        media: Sequence[str] | str = (),
        *,
        at: When | None = None,
    ) -> Reply:
        """Queue one reply to the sender: text and up to 10 images, one message.

        Call it several times to send several messages, in that order. Raises
        ``InvalidMessage`` at once when the reply breaks one of Twilio's limits.
        With ``at`` it is sent later instead (:meth:`schedule`).
        """
        if at is not None:
            return self.schedule(body, media, at=at)
        reply = Reply(body, media)
        self.replies.append(reply)
        return reply

    def schedule(
        self, body: str = "", media: Sequence[str] | str = (), *, at: When
    ) -> Reply:
        """Queue a message to the sender for later: a reminder, a follow-up.

        ``at`` is an aware ``datetime``, a ``timedelta`` from now, or text
        read in the contact's local time (``"+1h"``, ``"tomorrow 09:00"``).
        Committed with the rest of this message's effects; listed by
        ``textwire scheduled list`` and cancellable until it is sent. Quiet
        hours (``TEXTWIRE_QUIET_HOURS``) hold it, unlike a reply.

        Example::

            @bot.message(F.keyword("book"))
            def book(msg: Inbound, ctx: Context) -> str:
                ctx.schedule("How did your visit go?", at=timedelta(hours=1))
                return "Booked for 3 pm."

        Raises:
            InvalidMessage: the message breaks one of Twilio's limits.
            InvalidSendTime: ``at`` is unreadable, past, or over a year ahead.
        """
        reply = Reply(body, media)
        self.scheduled.append(Scheduled(reply, self._send_time(at)))
        return reply

    def _send_time(self, at: When) -> datetime:
        from textwire.when import check_send_time, parse_when

        if isinstance(at, timedelta):
            return check_send_time(self.now + at, self.now)
        if isinstance(at, datetime):
            return check_send_time(at, self.now)
        from textwire.quiet import zones_for_number

        return parse_when(at, now=self.now, zones=zones_for_number(self.contact))

    def media_url(self, path: str) -> str:
        """The public URL of a file the bot serves from its media folder.

        ``ctx.media_url("logo.png")`` → ``https://bot.example.com/media/logo.png``.
        """
        if not self.public_url:
            raise RuntimeError(
                "no public URL is known: set TEXTWIRE_PUBLIC_URL so Twilio can "
                "fetch the bot's media"
            )
        return f"{self.public_url.rstrip('/')}/media/{quote(path.lstrip('/'))}"

    def set_opt_out(self, opted_out: bool) -> None:
        """Opt the contact out (``True``, as STOP does) or back in (``False``),
        committed with the rest of this message's effects."""
        self.opt_out_change = opted_out

    def handoff(self, note: str = "") -> None:
        """Hand the contact to a person: from their next message on, the bot
        stays silent and their messages wait in the operator console, until an
        operator hands them back (or ``TEXTWIRE_HANDOFF_TIMEOUT`` passes).

        Committed with the rest of this message's effects; this message's
        replies still go out (tell the contact a person will answer)::

            @bot.message(F.keyword("agent"))
            def agent(msg: Inbound, ctx: Context) -> str:
                ctx.handoff(note="asked for a person")
                return "A person will answer you here shortly."
        """
        self.handoff_change = HandoffChange(active=True, note=note.strip()[:500])

    def fetch_media(self, index: int = 0) -> MediaFile:
        """File ``index`` of this message's media: its bytes and content type,
        fetched with the account's credentials (Twilio requires HTTP Basic
        auth), within ``TEXTWIRE_MEDIA_MAX_BYTES`` and ``TEXTWIRE_MEDIA_TIMEOUT``;
        a copy is kept in ``TEXTWIRE_MEDIA_STORE`` for the console.

        ``ctx.fetch_media(0)`` in a plain handler; ``await ctx.fetch_media(0)``
        in an ``async def`` one (see :mod:`textwire.attachments`).

        Raises:
            IndexError: the message has no file ``index``.
            MediaFetchError: it could not be fetched (``MediaTooLarge`` over
                the size limit); in an async handler, when awaited.
        """
        source = self.options.media_source
        if source is None:
            raise RuntimeError(
                "no media source: ctx.fetch_media works in textwire's worker "
                "(or BotTester(media=...))"
            )
        return MediaFile.fetch(source, self.msg, index)

    def run_async(self, awaitable: Awaitable[T]) -> T:
        """Run ``awaitable`` to completion where this message is handled (the
        worker's event loop) and return its result."""
        if self._run_async is None:
            raise RuntimeError(
                "an async handler needs an event loop: it runs in the worker, "
                "BotTester or TwiML mode, which give the context one"
            )
        result: T = self._run_async(awaitable)
        return result

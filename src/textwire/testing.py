"""Test helpers for bot authors: talk to a bot without Flask, Twilio or a database.

::

    from textwire.testing import BotTester
    from mybot import bot

    def test_help():
        tester = BotTester(bot)
        (reply,) = tester.send("help")
        assert len(reply.media) == 2
        assert tester.texts("order") == ["What would you like?"]
        assert tester.texts("pizza")[0] == "One pizza, coming up."

``BotTester`` calls ``bot.handle`` — the entry point textwire's worker calls —
with the same middleware: STOP opts the sender out and never reaches a
handler, the MMS policy turns pictures for a phone without MMS into links,
``async def`` handlers are awaited. Conversation state and opt-outs are kept
between ``send`` calls, per sender, in memory, and committed the way the
worker commits them. The replies are the very ``Reply`` objects the outbox
would get.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Awaitable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from textwire.attachments import FetchedMedia, MediaSource
from textwire.bot import Bot, Outcome
from textwire.config import DEFAULT_APOLOGY, Settings
from textwire.context import HandleOptions
from textwire.conversation import MemoryStateStore, apply_state_changes
from textwire.errors import MediaFetchError
from textwire.handoff import HandoffState
from textwire.messages import Inbound, Reply

__all__ = ["BotTester", "FakeMediaSource", "make_inbound"]


class FakeMediaSource:
    """Inbound media from memory, for ``ctx.fetch_media`` under ``BotTester``.

    Args:
        files: media URL → ``(bytes, content type)``; any other URL is
            answered like a file Twilio deleted (``MediaFetchError``, 404).

    Attributes:
        fetched: the URLs fetched, in order.

    Example::

        media = FakeMediaSource({"https://api.twilio.com/…/ME1": (png, "image/png")})
        tester = BotTester(bot, media=media)
        tester.send("", media=["https://api.twilio.com/…/ME1"])
        assert media.fetched == ["https://api.twilio.com/…/ME1"]
    """

    def __init__(self, files: Mapping[str, tuple[bytes, str]] | None = None) -> None:
        self.files = dict(files or {})
        self.fetched: list[str] = []

    def fetch(self, msg: Inbound, index: int) -> FetchedMedia:
        url = msg.media[index].url
        self.fetched.append(url)
        if url not in self.files:
            raise MediaFetchError(
                "media not found (HTTP 404): not in the tester's media", status=404
            )
        data, content_type = self.files[url]
        return FetchedMedia(data, content_type, stored=f"memory:{msg.sid}/{index}")


_sids = itertools.count(1)


def make_inbound(
    body: str = "",
    *,
    from_: str = "+14155550199",
    to: str = "+14155550100",
    media: Sequence[str] = (),
    **params: str,
) -> Inbound:
    """An ``Inbound`` as Twilio's webhook would deliver it, with a fresh SID."""
    sid = f"SM{next(_sids):032x}"
    form = {
        "MessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": from_,
        "To": to,
        "Body": body,
        "NumMedia": str(len(media)),
        **{f"MediaUrl{i}": url for i, url in enumerate(media)},
        **{f"MediaContentType{i}": "image/jpeg" for i in range(len(media))},
        **params,
    }
    return Inbound.from_form(form)


class BotTester:
    """Sends messages to a bot the way textwire's worker hands them over.

    Args:
        bot: the bot under test.
        public_url: base of ``ctx.media_url``.
        apology: what a failing handler answers.
        settings: take the public URL, apology and media policy from these
            instead (``TEXTWIRE_MMS_FALLBACK`` …).
        media: where ``ctx.fetch_media`` gets files (a :class:`FakeMediaSource`
            with none by default).

    Attributes:
        opted_out: the senders who replied STOP (and not START since).
        handed_off: the senders handed to a person (``ctx.handoff()``), and
            since when; :meth:`hand_back` gives one back to the bot.
        last: the :class:`~textwire.bot.Outcome` of the last ``send``.
    """

    def __init__(
        self,
        bot: Bot,
        *,
        public_url: str = "https://bot.example.com",
        apology: str = DEFAULT_APOLOGY,
        settings: Settings | None = None,
        media: MediaSource | None = None,
    ) -> None:
        self.bot = bot
        self.media = media if media is not None else FakeMediaSource()
        options = (
            HandleOptions.from_settings(settings)
            if settings is not None
            else HandleOptions(public_url=public_url, apology=apology)
        )
        self.options = dataclasses.replace(options, media_source=self.media)
        self.public_url = self.options.public_url
        self.state_store = MemoryStateStore()
        self.opted_out: set[str] = set()
        self.handed_off: dict[str, HandoffState] = {}
        self.last: Outcome | None = None
        self._runner: asyncio.Runner | None = None

    def send(
        self,
        body: str = "",
        *,
        from_: str = "+14155550199",
        to: str = "+14155550100",
        media: Sequence[str] = (),
        now: datetime | None = None,
        **params: str,
    ) -> list[Reply]:
        """Deliver one message to the bot; return its replies in order."""
        return list(
            self.handle(
                make_inbound(body, from_=from_, to=to, media=media, **params), now=now
            ).replies
        )

    def handle(self, msg: Inbound, *, now: datetime | None = None) -> Outcome:
        """Hand ``msg`` to the bot and commit its effects in memory."""
        at = now or datetime.now(UTC)
        outcome = self.bot.handle(
            msg,
            state_store=self.state_store,
            opted_out=msg.from_ in self.opted_out,
            now=at,
            options=self.options,
            run_async=self._run_async,
            handoff=self.handed_off.get(msg.from_),
        )
        apply_state_changes(self.state_store, outcome.state_changes)
        if outcome.opt_out is True:
            self.opted_out.add(msg.from_)
        elif outcome.opt_out is False:
            self.opted_out.discard(msg.from_)
        if outcome.handoff is not None and outcome.handoff.active:
            since = self.handed_off.get(msg.from_)
            self.handed_off[msg.from_] = HandoffState(
                since=since.since if since else at,
                active_at=at,
                note=outcome.handoff.note,
                by=outcome.handoff.by,
            )
        elif outcome.handoff is not None:
            self.handed_off.pop(msg.from_, None)
        self.last = outcome
        return outcome

    def hand_back(self, from_: str = "+14155550199") -> None:
        """Give a sender handed to a person back to the bot (the console's
        *Back to the bot*)."""
        self.handed_off.pop(from_, None)

    def texts(
        self, body: str = "", *, from_: str = "+14155550199", media: Sequence[str] = ()
    ) -> list[str]:
        """Like ``send`` but only the reply bodies."""
        return [reply.body for reply in self.send(body, from_=from_, media=media)]

    def _run_async(self, awaitable: Awaitable[Any]) -> Any:
        # One loop for the tester's life, like the worker's: async clients a
        # bot keeps between messages stay usable.
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(_await(awaitable))

    def close(self) -> None:
        """Close the event loop ``async def`` handlers ran on, if any."""
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def __enter__(self) -> BotTester:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable

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
import itertools
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from typing import Any

from textwire.bot import Bot, Outcome
from textwire.config import DEFAULT_APOLOGY, Settings
from textwire.context import HandleOptions
from textwire.conversation import MemoryStateStore, apply_state_changes
from textwire.messages import Inbound, Reply

__all__ = ["BotTester", "make_inbound"]

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

    Attributes:
        opted_out: the senders who replied STOP (and not START since).
        last: the :class:`~textwire.bot.Outcome` of the last ``send``.
    """

    def __init__(
        self,
        bot: Bot,
        *,
        public_url: str = "https://bot.example.com",
        apology: str = DEFAULT_APOLOGY,
        settings: Settings | None = None,
    ) -> None:
        self.bot = bot
        self.options = (
            HandleOptions.from_settings(settings)
            if settings is not None
            else HandleOptions(public_url=public_url, apology=apology)
        )
        self.public_url = self.options.public_url
        self.state_store = MemoryStateStore()
        self.opted_out: set[str] = set()
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
        outcome = self.bot.handle(
            msg,
            state_store=self.state_store,
            opted_out=msg.from_ in self.opted_out,
            now=now or datetime.now(UTC),
            options=self.options,
            run_async=self._run_async,
        )
        apply_state_changes(self.state_store, outcome.state_changes)
        if outcome.opt_out is True:
            self.opted_out.add(msg.from_)
        elif outcome.opt_out is False:
            self.opted_out.discard(msg.from_)
        self.last = outcome
        return outcome

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

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

Conversation state is kept between ``send`` calls, per sender, in memory. The
replies are the very ``Reply`` objects the outbox would get.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime

from textwire.bot import Bot
from textwire.config import DEFAULT_APOLOGY
from textwire.conversation import MemoryStateStore
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
    """Sends messages to a bot the way textwire's webhook does.

    Args:
        bot: the bot under test.
        public_url: base of ``ctx.media_url``.
        apology: what a failing handler answers.
    """

    def __init__(
        self,
        bot: Bot,
        *,
        public_url: str = "https://bot.example.com",
        apology: str = DEFAULT_APOLOGY,
    ) -> None:
        self.bot = bot
        self.public_url = public_url
        self.apology = apology
        self.state_store = MemoryStateStore()

    def send(
        self,
        body: str = "",
        *,
        from_: str = "+14155550199",
        media: Sequence[str] = (),
        now: datetime | None = None,
    ) -> list[Reply]:
        """Deliver one message to the bot; return its replies in order."""
        msg = make_inbound(body, from_=from_, media=media)
        return self.bot.dispatch(
            msg,
            state_store=self.state_store,
            now=now or datetime.now(UTC),
            public_url=self.public_url,
            default_apology=self.apology,
        )

    def texts(
        self, body: str = "", *, from_: str = "+14155550199", media: Sequence[str] = ()
    ) -> list[str]:
        """Like ``send`` but only the reply bodies."""
        return [reply.body for reply in self.send(body, from_=from_, media=media)]

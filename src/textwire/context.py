"""What a handler receives beside the message."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote

from textwire.conversation import ConversationState
from textwire.messages import Inbound, Reply

if TYPE_CHECKING:
    from textwire.bot import Bot

__all__ = ["Context"]


class Context:
    """Per-message context handed to every handler as ``ctx``.

    Attributes:
        msg: the inbound message being handled.
        bot: the bot dispatching it.
        contact: the sender's number, E.164.
        state: this contact's conversation state (``get``/``set``/``update``/``clear``).
        match: the ``re.Match`` of the regex filter that selected the handler.
        logger: the bot's logger.
    """

    def __init__(
        self,
        msg: Inbound,
        *,
        bot: Bot,
        state: ConversationState,
        public_url: str | None = None,
    ) -> None:
        self.msg = msg
        self.bot = bot
        self.contact = msg.from_
        self.state = state
        self.match: re.Match[str] | None = None
        self.logger: logging.Logger = bot.logger
        self.public_url = public_url
        self.replies: list[Reply] = []

    def reply(self, body: str = "", media: Sequence[str] | str = ()) -> Reply:
        """Queue one reply to the sender: text and up to 10 images, one message.

        Call it several times to send several messages, in that order. Raises
        ``InvalidMessage`` at once when the reply breaks one of Twilio's limits.
        """
        reply = Reply(body, media)
        self.replies.append(reply)
        return reply

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

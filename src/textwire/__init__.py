"""textwire: SMS/MMS bots on Flask and Twilio.

Every number in E.164, every reply (text and up to 10 images) as exactly one
Twilio message, sent through a durable outbox that never sends twice::

    from textwire import Bot, Context, Inbound, Reply, filters as F

    bot = Bot(name="shop")

    @bot.message(F.keyword("help"))
    def help_(msg: Inbound, ctx: Context) -> Reply:
        return Reply("Here's our shop:", media=[ctx.media_url("shop.png")])
"""

from __future__ import annotations

from textwire import filters
from textwire.attachments import MediaFile
from textwire.bot import Bot
from textwire.config import Settings
from textwire.context import Context
from textwire.conversation import State, States
from textwire.errors import (
    AmbiguousSendError,
    BroadcastError,
    ConfigError,
    InvalidMessage,
    InvalidPhoneNumber,
    InvalidSendTime,
    MediaFetchError,
    MediaTooLarge,
    PermanentSendError,
    RateLimited,
    RecipientOptedOut,
    RegistrationError,
    SendError,
    TemporarySendError,
    TextwireError,
)
from textwire.messages import Inbound, Media, Reply, SegmentInfo, segment_info
from textwire.phone import normalize
from textwire.routing import Router
from textwire.sending import send_message

__version__ = "0.1.0"

__all__ = [
    # Core
    "Bot",
    "Context",
    "Inbound",
    "Media",
    "MediaFile",
    "Reply",
    "Router",
    "SegmentInfo",
    "Settings",
    "State",
    "States",
    "filters",
    "normalize",
    "segment_info",
    "send_message",
    # Errors
    "AmbiguousSendError",
    "BroadcastError",
    "ConfigError",
    "InvalidMessage",
    "InvalidPhoneNumber",
    "InvalidSendTime",
    "MediaFetchError",
    "MediaTooLarge",
    "PermanentSendError",
    "RateLimited",
    "RecipientOptedOut",
    "RegistrationError",
    "SendError",
    "TemporarySendError",
    "TextwireError",
]

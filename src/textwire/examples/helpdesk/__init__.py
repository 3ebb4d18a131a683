"""The help-desk bot: textwire's default, and the bug report it started from.

Text ``help`` and get one message with a short text and two pictures, a logo
and a help-desk drawing, served by the bot itself from ``/media/``. Anything
else gets the menu; a picture gets an acknowledgement; ``ticket`` starts a
two-step conversation that opens a ticket, keeping the photo sent with it (a
copy in ``TEXTWIRE_MEDIA_STORE``, shown in the operator console). ``agent``,
or a ticket that says it is urgent, hands the contact to a person: the bot
stays silent until an operator hands them back.
"""

from __future__ import annotations

import zlib
from datetime import timedelta
from pathlib import Path

from textwire import Bot, Context, Inbound, Reply
from textwire import filters as F
from textwire.conversation import State, States
from textwire.errors import MediaFetchError

__all__ = ["MENU", "create_bot"]

MEDIA = Path(__file__).parent / "media"

MENU = (
    "Help desk menu: reply HELP for how we can help, HOURS for opening hours, "
    "TICKET to report a problem, AGENT to talk to a person."
)

HANDED_OFF = "A person will answer you here shortly."


class Ticket(States):
    describing = State()


def create_bot() -> Bot:
    """Build the help-desk bot."""
    bot = Bot(
        name="helpdesk",
        media_folder=MEDIA,
        conversation_timeout=timedelta(hours=1),
    )

    @bot.message(F.keyword("help", "info"))
    def help_(msg: Inbound, ctx: Context) -> Reply:
        return Reply(
            "Hi from the textwire help desk! Reply HOURS for opening hours or "
            "TICKET to report a problem. A person answers within one working day.",
            media=[ctx.media_url("logo.png"), ctx.media_url("helpdesk.png")],
        )

    @bot.message(F.keyword("hours"))
    def hours(msg: Inbound, ctx: Context) -> str:
        return "We answer Monday to Friday, 9:00-17:00. Reply TICKET any time."

    @bot.message(F.keyword("ticket"))
    def ticket(msg: Inbound, ctx: Context) -> str:
        ctx.state.set(Ticket.describing)
        return "Describe the problem in one message (a photo helps too)."

    @bot.message(F.keyword("agent", "person", "human"))
    def agent(msg: Inbound, ctx: Context) -> str:
        ctx.handoff(note="asked for a person")
        return HANDED_OFF

    @bot.message(Ticket.describing)
    def describe(msg: Inbound, ctx: Context) -> str:
        number = zlib.crc32(msg.sid.encode()) % 100000
        ctx.state.clear()
        saved = _save_photos(msg, ctx)
        text = f"Thanks, ticket #{number:05d} is open"
        if saved:
            text += f" with your {'photo' if saved == 1 else f'{saved} photos'}"
        if "urgent" in msg.text.lower():
            ctx.handoff(note=f"urgent ticket #{number:05d}")
            return f"{text}. It's urgent, so a person will answer you here shortly."
        return f"{text}. We'll text you back here."

    @bot.message(F.has_media)
    def picture(msg: Inbound, ctx: Context) -> str:
        count = len(msg.media)
        things = "picture" if count == 1 else f"{count} pictures"
        return (
            f"Thanks for the {things}! Reply TICKET to attach it to a problem report."
        )

    @bot.fallback()
    def menu(msg: Inbound, ctx: Context) -> str:
        return MENU

    return bot


def _save_photos(msg: Inbound, ctx: Context) -> int:
    """Fetch the ticket's photos, which keeps a copy for the console; how
    many were saved. A photo that cannot be fetched does not stop the ticket."""
    saved = 0
    for index in range(len(msg.media)):
        try:
            ctx.fetch_media(index)
        except MediaFetchError as exc:
            ctx.logger.warning("ticket %s: photo %d not saved: %s", msg.sid, index, exc)
        else:
            saved += 1
    return saved

"""``send_message``: queue a message from an app, the path ``textwire send``
takes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from textwire.config import Settings

if TYPE_CHECKING:
    from textwire.storage.sql import SqlStore

__all__ = ["send_message"]


def send_message(
    to: str,
    body: str = "",
    media: Sequence[str] = (),
    *,
    at: datetime | str | None = None,
    settings: Settings | None = None,
    store: SqlStore | None = None,
) -> list[int]:
    """Queue one message (text and up to 10 images, one MMS) through the
    outbox; a running worker (``textwire run`` or ``textwire worker``) sends
    it. Returns its outbox ids (two when pictures for a phone without MMS
    became links that did not fit beside the text).

    ``at`` schedules it: an aware ``datetime``, or text read by
    :mod:`textwire.when` (``"+2h"``, ``"2026-12-24T09:00:00+01:00"``,
    ``"tomorrow 09:00"`` in the recipient's local time). List and cancel
    scheduled messages with ``textwire scheduled list`` / ``cancel``.

    Example::

        from textwire import send_message

        send_message("(415) 555-0199", "Your order shipped!")
        send_message("+447400123456", "Reminder: your visit is tomorrow",
                     at="tomorrow 09:00")

    Args:
        to: the recipient, in any format ``textwire.normalize`` reads.
        body: the text.
        media: image URLs.
        at: when to send it; now when omitted.
        settings: configuration; ``Settings.from_env()`` when omitted.
        store: the database; the settings' (opened and closed here) when
            omitted.

    Raises:
        InvalidPhoneNumber, InvalidMessage, InvalidSendTime, ConfigError,
        RecipientOptedOut: nothing was queued.
    """
    from textwire.service import queue_message

    settings = settings or Settings.from_env()
    if store is not None:
        return queue_message(
            store, to=to, body=body, media=media, settings=settings, at=at
        )
    from textwire.storage.setup import open_store

    opened = open_store(settings)
    try:
        return queue_message(
            opened, to=to, body=body, media=media, settings=settings, at=at
        )
    finally:
        opened.dispose()

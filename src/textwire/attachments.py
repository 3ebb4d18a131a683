"""Inbound media as a handler gets it: ``ctx.fetch_media(i)``.

Twilio keeps the files of an inbound MMS behind HTTP Basic auth (the
account SID and auth token). ``ctx.fetch_media(i)`` fetches file ``i`` of the
message being handled with those credentials, within a size limit and a
timeout, and keeps a copy in ``TEXTWIRE_MEDIA_STORE`` (so the console can
still show it once Twilio deleted it)::

    @bot.message(F.has_media)
    def photo(msg: Inbound, ctx: Context) -> str:
        picture = ctx.fetch_media(0)            # in a plain handler
        return f"Got your {picture.content_type} ({len(picture.data)} bytes)"

    @bot.message(F.has_media)
    async def photo_async(msg: Inbound, ctx: Context) -> str:
        picture = await ctx.fetch_media(0)      # the loop keeps running
        ...

The fetching itself (HTTP, credentials, the store) is an edge's job
(``textwire.mediastore``); here is only what a handler sees. Standard
library only.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from textwire.messages import Inbound

__all__ = ["FetchedMedia", "MediaFile", "MediaSource"]


@dataclasses.dataclass(frozen=True, slots=True)
class FetchedMedia:
    """The bytes of one file, its content type, and where its copy is kept
    (``None``: no copy)."""

    data: bytes
    content_type: str
    stored: str | None = None


class MediaSource(Protocol):
    """Fetches file ``index`` of an inbound message (``textwire.mediastore``).

    Raises ``MediaFetchError`` (``MediaTooLarge``) when it cannot.
    """

    def fetch(self, msg: Inbound, index: int) -> FetchedMedia: ...


class MediaFile:
    """One inbound media file: ``data`` (bytes) and ``content_type``.

    What ``ctx.fetch_media(i)`` returns. In a plain handler it is fetched
    already. In an ``async def`` handler the fetch runs in a thread while the
    event loop goes on: ``await`` it (it gives itself back, fetched).

    Attributes:
        index: which of the message's files it is.
        url: where Twilio keeps it (needs the account's credentials).
    """

    __slots__ = ("_future", "_result", "index", "url")

    def __init__(
        self,
        index: int,
        url: str,
        *,
        result: FetchedMedia | None = None,
        future: asyncio.Future[FetchedMedia] | None = None,
    ) -> None:
        self.index = index
        self.url = url
        self._result = result
        self._future = future

    def __repr__(self) -> str:
        if self._result is None:
            return f"MediaFile(index={self.index}, pending)"
        return (
            f"MediaFile(index={self.index}, content_type="
            f"{self._result.content_type!r}, {len(self._result.data)} bytes)"
        )

    def __await__(self) -> Generator[Any, None, MediaFile]:
        if self._future is not None and self._result is None:
            self._result = yield from self._future.__await__()
        return self

    def _fetched(self) -> FetchedMedia:
        if self._result is None:
            raise RuntimeError(
                "the media file is still being fetched: `await ctx.fetch_media(i)` "
                "in an async def handler"
            )
        return self._result

    @property
    def data(self) -> bytes:
        """The file's bytes."""
        return self._fetched().data

    @property
    def content_type(self) -> str:
        """Its media type as Twilio served it (``image/jpeg``)."""
        return self._fetched().content_type

    @property
    def stored(self) -> str | None:
        """Where its copy is kept (``TEXTWIRE_MEDIA_STORE``), if anywhere."""
        return self._fetched().stored

    @classmethod
    def fetch(cls, source: MediaSource, msg: Inbound, index: int) -> MediaFile:
        """Fetch file ``index`` of ``msg`` from ``source``: now, or, on a
        running event loop, in a thread (then await the result)."""
        url = msg.media[index].url  # IndexError at the call, in either case
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return cls(index, url, result=source.fetch(msg, index))
        future = loop.run_in_executor(None, source.fetch, msg, index)
        return cls(index, url, future=future)

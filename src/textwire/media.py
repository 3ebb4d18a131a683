"""Media for MMS: who can receive it, which URLs Twilio can fetch, and what to
do with pictures for a phone that cannot get them.

Twilio: "MMS messaging can only be sent within the US and Canada … MMS messages
sent internationally will be converted to SMS text messages with a URL link to
the media" (when the MMS Converter is on; otherwise 30011 / HTTP 400). textwire
decides before sending, by policy:

* ``link`` (default): the media URLs go in the body as links, one SMS;
* ``drop``: the media are left out, with a log line;
* ``send``: sent as MMS anyway (for a Messaging Service that converts).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping, Sequence
from typing import Literal
from urllib.parse import urlsplit

from textwire.errors import InvalidMessage
from textwire.messages import MAX_BODY_CHARS, Reply
from textwire.phone import mask, region_of

__all__ = [
    "MMS_REGIONS",
    "MmsPolicy",
    "apply_mms_policy",
    "check_media_host",
    "check_reply_media",
    "mms_capable",
    "probe_media",
]

logger = logging.getLogger("textwire.media")

MmsPolicy = Literal["link", "drop", "send"]

# Where Twilio delivers MMS natively (support article 223179808).
MMS_REGIONS = frozenset({"US", "CA"})

# Twilio: jpeg, jpg, gif and png are "fully supported" up to 5 MB; other
# accepted types (audio, video, vCard, PDF …) up to 500 KB.
IMAGE_TYPES = frozenset({"image/jpeg", "image/jpg", "image/gif", "image/png"})
IMAGE_LIMIT = 5 * 1024 * 1024
OTHER_LIMIT = 500 * 1024


def mms_capable(number: str) -> bool:
    """Whether Twilio delivers MMS to ``number`` (E.164 or ``whatsapp:+…``)."""
    if number.startswith("whatsapp:"):
        return True
    return region_of(number) in MMS_REGIONS


def apply_mms_policy(to: str, reply: Reply, policy: MmsPolicy) -> list[Reply]:
    """The message(s) to queue for ``reply`` to ``to`` under ``policy``."""
    if not reply.media or policy == "send" or mms_capable(to):
        return [reply]
    region = region_of(to) or "unknown region"
    if policy == "drop":
        logger.info(
            "dropping %d media for %s (%s has no MMS)",
            len(reply.media),
            mask(to),
            region,
        )
        return [Reply(reply.body)] if reply.body.strip() else []
    links = "\n".join(reply.media)
    body = f"{reply.body}\n{links}" if reply.body else links
    if _units(body) <= MAX_BODY_CHARS:
        return [Reply(body)]
    # Too long for one message: the text first, then the links, in order.
    return [Reply(reply.body), Reply(links)]


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


_PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")


def check_media_host(url: str) -> None:
    """Refuse a media URL Twilio could never fetch: a private or loopback host.

    Literal addresses are checked; names are not resolved (what a name
    resolves to here says nothing of what Twilio will see), but ``localhost``
    and private-use suffixes are refused.

    Raises:
        InvalidMessage: naming the URL and why.
    """
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    reason: str | None = None
    if host == "localhost" or host.endswith(_PRIVATE_SUFFIXES):
        reason = "a local host name"
    else:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return
        if not address.is_global:
            reason = "a private, loopback or reserved address"
    if reason:
        shown = url if len(url) <= 80 else url[:77] + "..."
        raise InvalidMessage(
            f"media URL {shown} points at {reason}: Twilio fetches media over the "
            "internet, so use a public URL (set TEXTWIRE_PUBLIC_URL for the bot's "
            "own media)"
        )


def check_reply_media(reply: Reply, public_url: str | None) -> None:
    """:func:`check_media_host` for each of ``reply``'s media URLs, except the
    bot's own (under ``public_url``, which Twilio reaches).

    Raises:
        InvalidMessage: naming the first URL on a private host.
    """
    own = public_url.rstrip("/") + "/" if public_url else None
    for url in reply.media:
        if own is None or not url.startswith(own):
            check_media_host(url)


def probe_media(urls: Sequence[str], *, timeout: float = 5.0) -> list[str]:
    """HEAD each URL as Twilio will GET it; return one readable problem per bad URL.

    Checks: it answers 2xx, has a content type Twilio accepts (not a web
    page), and is within Twilio's size limits when its size is given.
    """
    import requests

    problems: list[str] = []
    with requests.Session() as session:
        for url in urls:
            try:
                response = session.head(url, timeout=timeout, allow_redirects=True)
            except requests.RequestException as exc:
                problems.append(f"{url}: unreachable ({type(exc).__name__})")
                continue
            with response:
                problem = _judge(response.status_code, response.headers)
            if problem:
                problems.append(f"{url}: {problem}")
    return problems


def _judge(status: int, headers: Mapping[str, str]) -> str | None:
    if not 200 <= status < 300:
        return f"answered HTTP {status}"
    kind = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if not kind:
        return "no Content-Type: Twilio needs one to send the file"
    if kind.startswith("text/html"):
        return "is a web page (text/html), not a media file"
    limit = IMAGE_LIMIT if kind in IMAGE_TYPES else OTHER_LIMIT
    size = headers.get("Content-Length")
    if size and size.isdigit() and int(size) > limit:
        return (
            f"{int(size) / 1024 / 1024:.1f} MB is over Twilio's "
            f"{limit // 1024} KB limit for {kind}"
        )
    return None

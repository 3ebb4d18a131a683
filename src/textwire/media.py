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
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from textwire.errors import InvalidMessage
from textwire.messages import MAX_BODY_CHARS, Reply
from textwire.phone import mask, region_of

if TYPE_CHECKING:
    import requests

__all__ = [
    "MMS_REGIONS",
    "MmsPolicy",
    "apply_mms_policy",
    "check_media_host",
    "check_reply_media",
    "is_public_address",
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
# The NAT64 well-known prefix: its last 32 bits are an IPv4 address (RFC 6052).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public_address(address: str | IPAddress) -> bool:
    """Whether Twilio could reach ``address`` over the internet.

    Checked with ``ipaddress`` on the address itself (IPv4 inside IPv6, as
    ``::ffff:127.0.0.1``, 6to4 or NAT64, is checked as the IPv4 it carries):
    private, loopback, link-local, reserved and multicast addresses are not.
    """
    parsed = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(parsed, ipaddress.IPv6Address):
        embedded = parsed.ipv4_mapped or parsed.sixtofour
        if embedded is None and parsed in _NAT64:
            embedded = ipaddress.IPv4Address(int(parsed) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
    return parsed.is_global and not parsed.is_multicast


def _numeric_host(host: str) -> IPAddress | None:
    """The address a numeric host stands for, read as the system reads it
    (``0x7f000001``, ``2130706433``, ``0177.0.0.1`` and ``127.1`` are all
    127.0.0.1); ``None`` for a name. No DNS: ``AI_NUMERICHOST``."""
    try:
        infos = socket.getaddrinfo(
            host, None, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
        )
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return ipaddress.ip_address(infos[0][4][0]) if infos else None


def check_media_host(url: str) -> None:
    """Refuse a media URL Twilio could never fetch: a private or loopback host.

    Numeric hosts are checked in every notation the system accepts; names are
    not resolved (what a name resolves to here says nothing of what Twilio
    will see, and this runs inside the webhook), but ``localhost`` and
    private-use suffixes are refused. :func:`probe_media`, which does connect,
    checks the address it connects to.

    Raises:
        InvalidMessage: naming the URL and why.
    """
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    reason: str | None = None
    if host == "localhost" or host.endswith(_PRIVATE_SUFFIXES):
        reason = "a local host name"
    else:
        address = _numeric_host(host)
        if address is not None and not is_public_address(address):
            reason = "a private, loopback or reserved address"
    if reason:
        raise InvalidMessage(
            f"media URL {_shown(url)} points at {reason}: Twilio fetches media over "
            "the internet, so use a public URL (set TEXTWIRE_PUBLIC_URL for the "
            "bot's own media)"
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


def _shown(url: str) -> str:
    return url if len(url) <= 80 else url[:77] + "..."


class _Refused(Exception):
    """The probe was about to talk to an address Twilio could never fetch from.

    Deliberately not an ``OSError``: urllib3 would take that for a network
    error and retry or wrap it; this one ends the request as it is.
    """

    def __init__(self, host: str, address: str) -> None:
        self.host = host
        self.address = address
        super().__init__(f"{host} is {address}")


def probe_media(
    urls: Sequence[str],
    *,
    timeout: float = 5.0,
    allow_private: bool = False,
    own_url: str | None = None,
) -> list[str]:
    """HEAD each URL as Twilio will GET it; return one readable problem per bad URL.

    Checks: it answers 2xx, has a content type Twilio accepts (not a web
    page), and is within Twilio's size limits when its size is given.

    Unless ``allow_private``, the probe only talks to public addresses: every
    connection, the first and each redirect's, is checked on the addresses
    its host resolves to and then on the address actually connected to (so a
    name that resolves elsewhere the second time gains nothing). No proxy from
    the environment is used, since the address checked must be the server's.

    Args:
        urls: the media URLs.
        timeout: seconds per request.
        allow_private: probe private and loopback addresses too
            (``TEXTWIRE_ALLOW_PRIVATE_MEDIA``).
        own_url: the bot's public base URL: its own host and port are probed
            even when private, as its own media are always allowed.
    """
    import requests

    problems: list[str] = []
    session = requests.Session() if allow_private else _guarded_session(own_url)
    with session:
        for url in urls:
            try:
                response = session.head(url, timeout=timeout, allow_redirects=True)
            except _Refused as exc:
                problems.append(
                    f"{url}: refused: {exc}, a private, loopback or reserved "
                    "address (Twilio fetches media over the internet)"
                )
                continue
            except requests.RequestException as exc:
                problems.append(f"{url}: unreachable ({type(exc).__name__})")
                continue
            with response:
                problem = _judge(response.status_code, response.headers)
            if problem:
                problems.append(f"{url}: {problem}")
    return problems


def _endpoint(url: str | None) -> tuple[str, int] | None:
    if not url:
        return None
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def _guarded_session(own_url: str | None) -> requests.Session:
    """A requests session whose every connection goes to a public address
    (or to ``own_url``'s host and port)."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    trusted = _endpoint(own_url)

    def guarded(
        host: str, port: int | None, connect: Callable[[], socket.socket]
    ) -> socket.socket:
        if trusted is not None and (host.lower(), port) == trusted:
            return connect()
        _vet(host, port)
        sock = connect()
        address = str(sock.getpeername()[0])
        if not is_public_address(address):
            sock.close()
            raise _Refused(host, address)
        return sock

    class Http(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return guarded(self.host, self.port, super()._new_conn)

    class Https(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return guarded(self.host, self.port, super()._new_conn)

    class HttpPool(HTTPConnectionPool):
        ConnectionCls = Http

    class HttpsPool(HTTPSConnectionPool):
        ConnectionCls = Https

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {
                "http": HttpPool,
                "https": HttpsPool,
            }

    session = requests.Session()
    session.trust_env = False
    session.mount("http://", Adapter())
    session.mount("https://", Adapter())
    return session


def _vet(host: str, port: int | None) -> None:
    """Refuse before connecting when any address of ``host`` is not public."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return  # the connection itself fails and says so
    for info in infos:
        address = str(info[4][0])
        if not is_public_address(address):
            raise _Refused(host, address)


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

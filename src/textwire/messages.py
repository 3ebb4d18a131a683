"""Messages in and out: ``Inbound``, ``Reply``, ``Media``, and Twilio's limits.

Everything here is plain Python (no Flask, Twilio or SQL), so the rules are the same
in handlers, the send worker, the CLI and the emulator:

* a reply is one Twilio message: a body of at most 1,600 characters (counted the way
  Twilio counts them, in UTF-16 code units) and at most 10 absolute http(s) media URLs.
  Nothing is ever truncated or split behind your back; :func:`split_body` is the
  explicit way to send a long text as ordered parts;
* :func:`segment_info` does the GSM-7 / UCS-2 segment math of Twilio's segment
  calculator (user-perceived characters are never split across segments), so a
  bot can see what a text will cost before sending it;
* :meth:`Inbound.from_form` turns Twilio's inbound webhook form into an ``Inbound``
  with every phone number in E.164 (or a short code / sender ID), or raises
  :class:`~textwire.errors.MalformedWebhook`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import regex

from textwire.errors import InvalidMessage, InvalidPhoneNumber, MalformedWebhook
from textwire.phone import normalize_sender

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENDED",
    "MAX_BODY_CHARS",
    "MAX_MEDIA",
    "Inbound",
    "Media",
    "Reply",
    "SegmentInfo",
    "StatusCallback",
    "check_media_url",
    "segment_info",
    "split_body",
]

MAX_BODY_CHARS = 1600
"""Twilio's body limit, in UTF-16 code units (error 21617 beyond it)."""

MAX_MEDIA = 10
"""Twilio's limit on media URLs per outbound message (error 21623 beyond it)."""

# GSM 03.38 default alphabet, in code order 0x00-0x7F, with ESC (0x1B) left out: ESC is
# the prefix of the extension table, not a character of its own.
GSM7_BASIC: frozenset[str] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
"""The 127 characters of the GSM 03.38 basic table; each costs one septet."""

GSM7_EXTENDED: frozenset[str] = frozenset("\f^{}\\[~]|€")
"""The GSM 03.38 extension table; each character costs two septets (ESC + code)."""

_GSM7_ALL = GSM7_BASIC | GSM7_EXTENDED

_GSM7_SINGLE, _GSM7_MULTI = 160, 153
_UCS2_SINGLE, _UCS2_MULTI = 70, 67

# Twilio SIDs: two uppercase letters and 32 hex digits (SM…, MM…, AC…).
_SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")
_UNSIGNED = re.compile(r"[0-9]+")

# Twilio allows 10 inbound media; anything far above that is not a Twilio form.
_MAX_INBOUND_MEDIA = 100
_URL_IN_ERRORS = 80
_UNICODE_IN_STR = 5


# One user-perceived character: a Unicode extended grapheme cluster (UAX #29), e.g.
# a flag, a ZWJ family, an emoji with a skin tone, a letter with combining marks.
_GRAPHEME = regex.compile(r"\X")


def _utf16_units(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _graphemes(text: str) -> list[str]:
    """The user-perceived characters of ``text``, as Twilio's segment calculator
    sees them: extended grapheme clusters, except that CR LF counts as two
    characters (the calculator splits that one cluster, so a segment may end
    between them)."""
    if text.isascii():
        return list(text)  # every ASCII character is a grapheme of its own
    found: list[str] = []
    for cluster in _GRAPHEME.findall(text):
        if cluster == "\r\n":
            found.extend(cluster)
        else:
            found.append(cluster)
    return found


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """How Twilio will encode and bill a body.

    Attributes:
        encoding: ``"GSM-7"`` when every character is in the GSM 03.38 tables,
            else ``"UCS-2"``.
        characters: the length as the network counts it: septets for GSM-7
            (extension characters such as ``€`` count 2), UTF-16 code units for
            UCS-2 (an emoji counts 2).
        segments: how many SMS segments the body is sent (and billed) as.
        unicode_chars: the distinct characters that forced UCS-2, in order of
            first appearance, each as a person sees it (a whole grapheme such
            as ``"👍🏽"``); empty for GSM-7.

    Example:
        >>> str(segment_info("Café ☕"))
        "UCS-2, 6 chars, 1 segment (because of '☕')"
    """

    encoding: Literal["GSM-7", "UCS-2"]
    characters: int
    segments: int
    unicode_chars: tuple[str, ...] = ()

    @property
    def per_segment(self) -> int:
        """Capacity of each segment: 160/153 for GSM-7, 70/67 for UCS-2.

        The second number applies when the body is split, since every part then
        carries a 6-byte header telling the phone how to join the parts.
        """
        if self.encoding == "GSM-7":
            return _GSM7_SINGLE if self.segments == 1 else _GSM7_MULTI
        return _UCS2_SINGLE if self.segments == 1 else _UCS2_MULTI

    def __str__(self) -> str:
        text = (
            f"{self.encoding}, {_plural(self.characters, 'char')}, "
            f"{_plural(self.segments, 'segment')}"
        )
        if not self.unicode_chars:
            return text
        shown = ", ".join(repr(char) for char in self.unicode_chars[:_UNICODE_IN_STR])
        more = len(self.unicode_chars) - _UNICODE_IN_STR
        if more > 0:
            shown += f" and {more} more"
        return f"{text} (because of {shown})"


def _whole(
    pieces: Iterable[tuple[str, int]], capacity: int
) -> Iterator[tuple[str, int]]:
    """``pieces`` as (text, cost), each kept whole unless it alone exceeds
    ``capacity``: such a grapheme is given as its code points (never half of a
    surrogate pair), since no segment can hold it whole."""
    for text, cost in pieces:
        if cost <= capacity:
            yield text, cost
        else:
            yield from ((char, _utf16_units(char)) for char in text)


def _encode(body: str) -> tuple[bool, list[tuple[str, int]]]:
    """Whether ``body`` is GSM-7, and its graphemes with their cost: septets
    for GSM-7, UTF-16 units for UCS-2."""
    if _GSM7_ALL.issuperset(body):
        # No GSM-7 character extends another into one grapheme (CR LF aside,
        # which the calculator splits), so each is a grapheme of its own.
        return True, [(c, 2 if c in GSM7_EXTENDED else 1) for c in body]
    # A cluster of several code points always holds one outside GSM-7 (a
    # combining mark, ZWJ, a variation selector ...), so one character outside
    # the tables is the calculator's test for UCS-2.
    return False, [
        (g, _utf16_units(g) if len(g) == 1 else _utf16_len(g)) for g in _graphemes(body)
    ]


def _segments(body: str) -> list[str]:
    """The text of each SMS segment of ``body``, in order.

    One segment when the whole body fits 160 septets / 70 UTF-16 units; else
    segments of 153 / 67 (each then carries a 6-byte header), filled greedily
    with whole graphemes: one that does not fit starts the next segment. A
    grapheme longer than a whole segment is the exception: it is spread over
    segments by code point (see :func:`segment_info`). ``"".join`` of the
    result is ``body``; ``[""]`` for an empty body.
    """
    return _pack(body, *_encode(body))


def _pack(body: str, gsm: bool, pieces: list[tuple[str, int]]) -> list[str]:
    single, multi = (_GSM7_SINGLE, _GSM7_MULTI) if gsm else (_UCS2_SINGLE, _UCS2_MULTI)
    if sum(cost for _, cost in pieces) <= single:
        return [body]
    texts: list[str] = []
    cuts: list[int] = []  # where each segment after the first starts in texts
    used = 0
    for text, cost in _whole(pieces, multi):
        if used + cost > multi:
            cuts.append(len(texts))
            used = 0
        texts.append(text)
        used += cost
    bounds = [0, *cuts, len(texts)]
    return ["".join(texts[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]


def segment_info(body: str) -> SegmentInfo:
    """Work out the encoding and the number of segments of a text, as Twilio does.

    The body is GSM-7 when every character is in :data:`GSM7_BASIC` or
    :data:`GSM7_EXTENDED`; one character outside them makes the whole text UCS-2.
    A single segment holds 160 septets (GSM-7) or 70 UTF-16 units (UCS-2); a longer
    text is sent in segments of 153 / 67. As in Twilio's segment calculator
    (``sms-segments-calculator``, ``SegmentedMessage``), a user-perceived
    character is never split across two segments: not an escape pair (``€``),
    not a surrogate pair, not a grapheme cluster of several code points (a flag,
    a ZWJ family, ``👍🏽``, a keycap, ``❤️``, a letter with combining marks).

    The one exception, on purpose: a grapheme longer than a whole segment (67
    UTF-16 units, e.g. a letter with 70 combining accents) cannot stay whole, so
    it is cut between its code points. The calculator puts it whole into one
    segment, which then carries more than the 140 bytes a segment can hold; it
    does the same when it moves whole graphemes to a new segment without
    checking that they still fit. Here no segment ever exceeds 140 bytes, so
    the count can be higher than the calculator's in those cases only.

    Args:
        body: the message text.

    Returns:
        The encoding, length, segment count and the characters (graphemes)
        that forced UCS-2.

    Example:
        >>> segment_info("a" * 161).segments
        2
        >>> segment_info("Hi 😀").encoding
        'UCS-2'
        >>> segment_info("a" * 65 + "👍🏽" + "a" * 65).segments
        3
    """
    gsm, pieces = _encode(body)
    total = sum(cost for _, cost in pieces)
    segments = len(_pack(body, gsm, pieces))
    if gsm:
        return SegmentInfo("GSM-7", total, segments)
    culprits = (g for g, _ in pieces if not _GSM7_ALL.issuperset(g))
    return SegmentInfo("UCS-2", total, segments, tuple(dict.fromkeys(culprits)))


def _shorten(text: str, limit: int = _URL_IN_ERRORS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_media_url(url: str) -> str:
    """Check that ``url`` is a media URL Twilio can fetch, and return it stripped.

    Twilio only accepts absolute ``http://`` or ``https://`` URLs (error 21620
    otherwise), and it fetches them itself, so a relative path is never enough.

    Args:
        url: the media URL.

    Returns:
        ``url`` without surrounding whitespace.

    Raises:
        InvalidMessage: ``url`` is not a string, not absolute http(s), has no
            host, or holds whitespace.

    Example:
        >>> check_media_url(" https://example.com/cat.png ")
        'https://example.com/cat.png'
    """
    if not isinstance(url, str):
        raise InvalidMessage(f"media URL must be a string, got {type(url).__name__}")
    stripped = url.strip()
    shown = repr(_shorten(stripped))
    if any(char.isspace() or not char.isprintable() for char in stripped):
        raise InvalidMessage(
            f"media URL {shown} contains whitespace or control characters; "
            "percent-encode them (a space is %20)"
        )
    try:
        parts = urlsplit(stripped)
        _ = parts.port  # raises ValueError on a port that is not a number
    except ValueError as exc:
        raise InvalidMessage(f"media URL {shown} cannot be parsed: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidMessage(
            f"media URL {shown} must be an absolute http:// or https:// URL "
            "that Twilio can fetch"
        )
    if not parts.hostname:
        raise InvalidMessage(f"media URL {shown} has no host name")
    return stripped


@dataclass(frozen=True, slots=True)
class Media:
    """One media file attached to an inbound message.

    Attributes:
        url: where Twilio stores the file (fetch it with HTTP Basic auth).
        content_type: its MIME type as Twilio reported it, e.g. ``"image/jpeg"``.
    """

    url: str
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """One outbound message: a body and up to 10 media URLs, sent as one message.

    Text and images in the same ``Reply`` reach the phone together, as a single
    Twilio message. The limits are checked here, when the reply is made, so a
    handler fails loudly instead of a send failing later. Nothing is truncated: for
    a text longer than 1,600 characters, use :func:`split_body` and send the parts.

    Args:
        body: the text; may be empty when there is media.
        media: absolute http(s) URLs, as a list/tuple or a single string.

    Raises:
        InvalidMessage: the reply is empty, the body is over 1,600 UTF-16 units,
            there are more than 10 media URLs, or a URL is not absolute http(s).

    Example:
        >>> reply = Reply("Hi", media=["https://example.com/a.png"])
        >>> reply.media
        ('https://example.com/a.png',)
        >>> str(reply.segments)
        'GSM-7, 2 chars, 1 segment'
    """

    body: str = ""
    media: tuple[str, ...] = ()

    if TYPE_CHECKING:
        # The generated __init__ takes the same arguments; this signature only tells
        # type checkers that ``media`` may be any sequence or one string, which
        # __post_init__ turns into a tuple.
        def __init__(self, body: str = "", media: Sequence[str] | str = ()) -> None: ...

    def __post_init__(self) -> None:
        body: object = self.body
        if not isinstance(body, str):
            raise InvalidMessage(f"reply body must be a str, got {type(body).__name__}")
        media: object = self.media
        if isinstance(media, str):
            media = (media,)
        elif not isinstance(media, Sequence):
            raise InvalidMessage(
                "reply media must be a list of URLs or a single URL, "
                f"got {type(media).__name__}"
            )
        if len(media) > MAX_MEDIA:
            raise InvalidMessage(
                f"a reply can carry at most {MAX_MEDIA} media URLs (Twilio's limit); "
                f"{len(media)} were given. Send the rest in another Reply."
            )
        urls: list[str] = []
        for index, url in enumerate(media):
            if not isinstance(url, str):
                raise InvalidMessage(
                    f"reply media[{index}] must be a URL string, "
                    f"got {type(url).__name__}"
                )
            urls.append(check_media_url(url))
        object.__setattr__(self, "media", tuple(urls))
        length = _utf16_len(body)
        if length > MAX_BODY_CHARS:
            raise InvalidMessage(
                f"reply body is {length} characters long (UTF-16 units, as Twilio "
                f"counts them: an emoji counts 2); Twilio accepts at most "
                f"{MAX_BODY_CHARS}. Send it as ordered parts with "
                "textwire.messages.split_body()."
            )
        if not body.strip() and not urls:
            raise InvalidMessage(
                "empty reply: give a body that is not blank or at least one media URL"
            )

    @property
    def segments(self) -> SegmentInfo:
        """Encoding and segment count of the body (see :func:`segment_info`)."""
        return segment_info(self.body)


def split_body(body: str, limit: int = MAX_BODY_CHARS) -> list[str]:
    """Split a long text into ordered parts of at most ``limit`` UTF-16 units each.

    This is the deliberate way to send a text longer than Twilio's 1,600-character
    limit: send each part as its own :class:`Reply`, in order. Nothing calls it for
    you. A part ends after the last whitespace of its window when that whitespace
    lies in the last 20% of the window; otherwise the text is cut at the limit,
    never inside a user-perceived character (a surrogate pair, a flag, an emoji
    with its skin tone, a letter with its accents). Only a single grapheme longer
    than ``limit`` is cut between its code points, since no part could hold it.
    Whitespace stays at the end of the earlier part, so
    ``"".join(split_body(text)) == text``.

    Args:
        body: the text to split.
        limit: the largest part, in UTF-16 units (Twilio's count).

    Returns:
        The parts in order; ``[body]`` when it already fits (also for ``""``).

    Raises:
        ValueError: ``limit`` is below 2 (an emoji needs 2 units).

    Example:
        >>> split_body("aaaa bbbb cc", limit=10)
        ['aaaa bbbb ', 'cc']
    """
    if limit < 2:
        raise ValueError(f"limit must be at least 2 UTF-16 units, got {limit}")
    if _utf16_len(body) <= limit:
        return [body]
    clusters = ((g, _utf16_len(g)) for g in _GRAPHEME.findall(body))
    pieces = list(_whole(clusters, limit))
    min_break = limit - limit // 5  # a whitespace break must land in the last 20%
    parts: list[str] = []
    start = 0
    while start < len(pieces):
        used, end, best = 0, start, -1
        while end < len(pieces):
            text, cost = pieces[end]
            if used + cost > limit:
                break
            used += cost
            end += 1
            if text.isspace() and used >= min_break:
                best = end
        if end < len(pieces) and best != -1:
            end = best
        parts.append("".join(text for text, _ in pieces[start:end]))
        start = end
    return parts


# -- what Twilio sends, bounded at the edge ---------------------------------------
#
# A value Twilio never sends is refused with MalformedWebhook (a 400) before it
# reaches int(), a column or a handler; each bound below is what Twilio
# documents, with slack, and fits the column it is stored in.

# "Incoming messages to Twilio that exceed 1600 characters will be truncated to
# 1600 characters" (support article 360033806753, "Maximum Message Length with
# Twilio Programmable Messaging"). Twilio counts an emoji as more than one
# character; twice the limit in UTF-16 units leaves room for that. Stored as Text.
_MAX_INBOUND_BODY = 2 * MAX_BODY_CHARS
# Twilio reassembles a concatenated SMS; its header numbers the parts in one
# octet (3GPP TS 23.040 §9.2.3.24.1), so no text has more than 255. Integer column.
_MAX_INBOUND_SEGMENTS = 255
# OpenAPI: AccountSid ^AC[0-9a-fA-F]{32}$, MessagingServiceSid ^MG[0-9a-fA-F]{32}$
# (34 characters; the columns hold 64).
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
# From / To as Twilio writes them: E.164 is at most 16 characters,
# whatsapp:+E.164 25, a sender ID 11. The normalized value goes in String(64).
_MAX_ADDRESS = 64
# Media: Twilio's own media URLs are about 150 characters; a media type is at
# most 127 + 1 + 127 characters (RFC 6838) plus parameters.
_MEDIA_URL = re.compile(r"https?://[^\x00-\x20\x7f]+", re.IGNORECASE)
_MAX_MEDIA_URL = 2048
_CONTENT_TYPE = re.compile(r"[!-~][ -~]*")
_MAX_CONTENT_TYPE = 255
# Short fields Twilio fills with a word, a code or a place name. Fields not
# listed (Twilio adds some without notice) are kept whatever their length:
# the request as a whole is bounded by TEXTWIRE_MAX_REQUEST_BYTES.
_SHORT_FIELDS = (
    "FromCity",
    "FromState",
    "FromZip",
    "FromCountry",
    "ToCity",
    "ToState",
    "ToZip",
    "ToCountry",
    "SmsMessageSid",
    "SmsStatus",
    "ApiVersion",
    "OptOutType",
)
_MAX_SHORT_FIELD = 128
# Past 19 digits a count is "too big" without converting it: int() refuses
# strings of more than 4,300 digits, and no bound here needs 20.
_MAX_DIGITS = 19
_TOO_BIG: int = 10**_MAX_DIGITS


def _decimal(raw: str) -> int | None:
    """``raw`` (already stripped) as a non-negative int; ``None`` unless it is
    plain ASCII digits; ``_TOO_BIG`` for more than 19 significant digits."""
    if not _UNSIGNED.fullmatch(raw):
        return None
    if len(raw.lstrip("0")) > _MAX_DIGITS:
        return _TOO_BIG
    return int(raw)


def _clean(value: str) -> str:
    """Free text without NUL characters.

    NUL is dropped, not refused: PostgreSQL text cannot hold U+0000 and no
    phone shows it, while a 400 would lose a person's message (Twilio does not
    retry a 4xx). Structured fields (SIDs, numbers, counts, media) are checked
    against their shape instead, which a NUL never fits.
    """
    return value.replace("\x00", "")


def _field(form: Mapping[str, str], key: str) -> str | None:
    """One form value (the first, for a MultiDict), or None when absent."""
    value = form.get(key)
    return None if value is None else str(value)


def _show(value: str, *, quote: bool = True) -> str:
    """A form value for an error message; long ones could be a number or text."""
    if len(value) > 6:
        return f"a {len(value)}-character value"
    return repr(value) if quote else value


def _optional(form: Mapping[str, str], key: str) -> str | None:
    value = _field(form, key)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _form_region(raw: str, country: str | None) -> str | None:
    """The region Twilio names for a number written without ``+``, if any."""
    text = raw.strip()
    if text.startswith("+") or text.lower().startswith("whatsapp:"):
        return None
    if country is None or len(country) != 2:
        return None
    if not (country.isascii() and country.isalpha()):
        return None
    return country.upper()


def _sender(
    form: Mapping[str, str], key: str, country_key: str, region: str | None
) -> str:
    raw = _field(form, key)
    if raw is None or not raw.strip():
        raise MalformedWebhook(f"webhook form has no {key}")
    if len(raw) > _MAX_ADDRESS or "\x00" in raw:
        raise MalformedWebhook(
            f"webhook {key} is not a phone number, short code or sender ID: "
            f"{_show(raw)} (Twilio sends at most {_MAX_ADDRESS} characters)"
        )
    country = _form_region(raw, _optional(form, country_key))
    try:
        return _normalize_in(raw, country, region)
    except InvalidPhoneNumber as exc:
        # exc.reason never repeats the number; str(exc) would.
        raise MalformedWebhook(
            f"webhook {key} is not a phone number, short code or sender ID "
            f"textwire can read: {exc.reason}"
        ) from exc


def _normalize_in(raw: str, country: str | None, region: str | None) -> str:
    if country is None:
        return normalize_sender(raw, region=region)
    try:
        return normalize_sender(raw, region=country)
    except InvalidPhoneNumber:
        raise
    except ValueError:
        # A FromCountry / ToCountry code phonenumbers does not know: read the
        # number in the configured region rather than refuse the message.
        return normalize_sender(raw, region=region)


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message received through Twilio's inbound webhook.

    Build it with :meth:`from_form`. Phone numbers are already normalized: ``from_``
    and ``to`` are E.164 (``+14155550100``), ``whatsapp:+E164``, a short code or an
    alphanumeric sender ID, never the raw text Twilio sent.

    Attributes:
        sid: the MessageSid (``SM…`` or ``MM…``), unique per message: use it to
            drop duplicate webhooks.
        account_sid: the Twilio account (``AC…``).
        from_: who sent it (the contact).
        to: the number it was sent to (the bot's number).
        body: the text exactly as received (may be ``""``).
        media: attached files, in order.
        messaging_service_sid: the Messaging Service (``MG…``), if any.
        num_segments: how many segments the text arrived in, when Twilio says.
        from_country: ``FromCountry`` as Twilio sent it (``"US"``), if any.
        to_country: ``ToCountry`` as Twilio sent it, if any.
        params: every form field as received (first value per key), with NUL
            characters removed; read-only.

    Example:
        >>> msg = Inbound.from_form({
        ...     "MessageSid": "SM" + "0" * 32, "AccountSid": "AC" + "0" * 32,
        ...     "From": "+14155550100", "To": "+14155550199", "Body": " hi ",
        ... })
        >>> msg.text, msg.has_media
        ('hi', False)
    """

    sid: str
    account_sid: str
    from_: str
    to: str
    body: str
    media: tuple[Media, ...]
    messaging_service_sid: str | None
    num_segments: int | None
    from_country: str | None
    to_country: str | None
    params: Mapping[str, str] = field(repr=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "media", tuple(self.media))
        if not isinstance(self.params, MappingProxyType):
            object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    @property
    def text(self) -> str:
        """The body without surrounding whitespace."""
        return self.body.strip()

    @property
    def has_media(self) -> bool:
        """Whether the message carries at least one media file."""
        return bool(self.media)

    @classmethod
    def from_form(
        cls, form: Mapping[str, str], *, region: str | None = None
    ) -> Inbound:
        """Parse Twilio's inbound message webhook form.

        ``From`` and ``To`` go through :func:`textwire.phone.normalize_sender`. A
        number without ``+`` is read in the region Twilio names in ``FromCountry``
        / ``ToCountry`` when that is a two-letter code, else in ``region``.

        Args:
            form: the form fields: a dict or a werkzeug ``MultiDict`` (only
                ``.get`` and key iteration are used; the first value wins).
            region: the region for numbers without ``+`` when Twilio sends no
                country; ``None`` means textwire's default.

        Returns:
            The parsed message.

        Raises:
            MalformedWebhook: a field Twilio always sends is missing, or a value
                is one Twilio never sends (bad SID, unreadable number, bad
                NumMedia, missing or odd MediaUrlN, bad NumSegments, a body or
                a field far over Twilio's limits). The message never contains
                the body or a full phone number. NUL characters are removed
                from the body and the other free text, not refused.
        """
        params: dict[str, str] = {}
        for key in form:
            value = _field(form, key)
            if value is not None:
                params[_clean(str(key))] = _clean(value)

        sid = _field(form, "MessageSid") or _field(form, "SmsSid")
        if not sid:
            raise MalformedWebhook("webhook form has no MessageSid (nor SmsSid)")
        if not _SID.fullmatch(sid):
            raise MalformedWebhook(
                "webhook MessageSid is not a Twilio SID (expected 34 characters: "
                f"2 uppercase letters and 32 hex digits; got {len(sid)} characters)"
            )
        account_sid = _optional(form, "AccountSid")
        if account_sid is None:
            raise MalformedWebhook("webhook form has no AccountSid")
        if not _ACCOUNT_SID.fullmatch(account_sid):
            raise MalformedWebhook(
                "webhook AccountSid is not a Twilio account SID (expected AC and "
                f"32 hex digits; got {len(account_sid)} characters)"
            )
        service_sid = _optional(form, "MessagingServiceSid")
        if service_sid is not None and not _SERVICE_SID.fullmatch(service_sid):
            raise MalformedWebhook(
                "webhook MessagingServiceSid is not a Messaging Service SID "
                f"(expected MG and 32 hex digits; got {len(service_sid)} characters)"
            )
        for key in _SHORT_FIELDS:
            if len(params.get(key, "")) > _MAX_SHORT_FIELD:
                raise MalformedWebhook(
                    f"webhook {key} is {_show(params[key])}; Twilio sends at most "
                    f"{_MAX_SHORT_FIELD} characters there"
                )
        body = params.get("Body", "")
        if _utf16_len(body) > _MAX_INBOUND_BODY:
            raise MalformedWebhook(
                f"webhook Body is {_utf16_len(body)} characters long (UTF-16 "
                f"units); Twilio truncates incoming texts at {MAX_BODY_CHARS} "
                f"characters (textwire accepts up to {_MAX_INBOUND_BODY} units)"
            )

        from_ = _sender(form, "From", "FromCountry", region)
        to = _sender(form, "To", "ToCountry", region)

        num_media = 0
        raw_num_media = _field(form, "NumMedia")
        if raw_num_media is not None:
            raw_num_media = raw_num_media.strip()
            count = _decimal(raw_num_media)
            if count is None:
                raise MalformedWebhook(
                    "webhook NumMedia must be a non-negative integer, "
                    f"got {_show(raw_num_media)}"
                )
            if count > _MAX_INBOUND_MEDIA:
                raise MalformedWebhook(
                    f"webhook NumMedia is {_show(raw_num_media, quote=False)}; "
                    f"Twilio sends at most "
                    f"{MAX_MEDIA} media (textwire accepts up to {_MAX_INBOUND_MEDIA})"
                )
            num_media = count
        media = tuple(_media(form, index, num_media) for index in range(num_media))

        num_segments: int | None = None
        raw_segments = _field(form, "NumSegments")
        if raw_segments is not None:
            raw_segments = raw_segments.strip()
            num_segments = _decimal(raw_segments)
            if num_segments is None or num_segments < 1:
                raise MalformedWebhook(
                    "webhook NumSegments must be a positive integer, "
                    f"got {_show(raw_segments)}"
                )
            if num_segments > _MAX_INBOUND_SEGMENTS:
                raise MalformedWebhook(
                    f"webhook NumSegments is {_show(raw_segments, quote=False)}; "
                    f"a text has at most {_MAX_INBOUND_SEGMENTS} segments"
                )

        return cls(
            sid=sid,
            account_sid=account_sid,
            from_=from_,
            to=to,
            body=body,
            media=media,
            messaging_service_sid=service_sid,
            num_segments=num_segments,
            from_country=_optional(params, "FromCountry"),
            to_country=_optional(params, "ToCountry"),
            params=MappingProxyType(params),
        )


def _media(form: Mapping[str, str], index: int, count: int) -> Media:
    """``MediaUrl{index}`` and ``MediaContentType{index}``, checked."""
    url = _optional(form, f"MediaUrl{index}")
    if url is None:
        raise MalformedWebhook(
            f"webhook NumMedia is {count} but MediaUrl{index} is missing"
        )
    if len(url) > _MAX_MEDIA_URL or not _MEDIA_URL.fullmatch(url):
        raise MalformedWebhook(
            f"webhook MediaUrl{index} is not an http(s) URL of at most "
            f"{_MAX_MEDIA_URL} characters (got {len(url)} characters)"
        )
    kind = _optional(form, f"MediaContentType{index}")
    if kind is not None and (
        len(kind) > _MAX_CONTENT_TYPE or not _CONTENT_TYPE.fullmatch(kind)
    ):
        raise MalformedWebhook(
            f"webhook MediaContentType{index} is not a media type of at most "
            f"{_MAX_CONTENT_TYPE} printable characters (got {len(kind)} characters)"
        )
    return Media(url, kind)


# A status is a lowercase word (queued, sent, delivered …; the column holds
# 32). Unknown ones are kept and counted as "other", so any word will do.
# Error codes have five digits (30003, 63016): one more as slack, and well
# inside the Integer column. The outbox id is textwire's own (a 64-bit
# column), echoed back in the StatusCallback URL.
_STATUS = re.compile(r"[a-z0-9_-]{1,32}")
_MAX_ERROR_CODE = 999_999
_MAX_OUTBOX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class StatusCallback:
    """One delivery status callback (or a TwiML reply's ``action`` callback).

    Build it with :meth:`from_form`.

    Attributes:
        sid: the message's SID (``SM…`` or ``MM…``).
        status: the new status, lowercase (``sent``, ``delivered`` …).
        outbox_id: textwire's outbox row, from the callback URL, if any.
        error_code: Twilio's ``ErrorCode``, if it sent one.
    """

    sid: str
    status: str
    outbox_id: int | None
    error_code: int | None

    @classmethod
    def from_form(
        cls, form: Mapping[str, str], *, outbox: str | None = None
    ) -> StatusCallback:
        """Parse a status callback's form and the ``outbox`` query parameter.

        Raises:
            MalformedWebhook: MessageSid or MessageStatus is missing, or a value
                is one Twilio never sends (a SID of the wrong shape, a status
                that is not a word, an error code or outbox id out of range).
        """
        sid = _field(form, "MessageSid") or _field(form, "SmsSid")
        status = _field(form, "MessageStatus") or _field(form, "SmsStatus")
        if not sid or not status:
            raise MalformedWebhook(
                "a status callback needs MessageSid and MessageStatus"
            )
        if not _SID.fullmatch(sid):
            raise MalformedWebhook(
                "status callback MessageSid is not a Twilio SID (expected 34 "
                f"characters: 2 uppercase letters and 32 hex digits; got {len(sid)})"
            )
        status = status.strip().lower()
        if not _STATUS.fullmatch(status):
            raise MalformedWebhook(
                f"status callback MessageStatus {_show(status)} is not a status"
            )
        return cls(
            sid=sid,
            status=status,
            outbox_id=_bounded("outbox", outbox, low=1, high=_MAX_OUTBOX_ID),
            error_code=_bounded(
                "ErrorCode", _field(form, "ErrorCode"), low=0, high=_MAX_ERROR_CODE
            ),
        )


def _bounded(name: str, raw: str | None, *, low: int, high: int) -> int | None:
    """An optional whole number from ``low`` to ``high``; blank means none."""
    if raw is None or not raw.strip():
        return None
    value = _decimal(raw.strip())
    if value is None or not low <= value <= high:
        raise MalformedWebhook(
            f"status callback {name} must be a whole number from {low} to {high}, "
            f"got {_show(raw.strip())}"
        )
    return value

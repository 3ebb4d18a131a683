"""Twilio's rules, as the emulator checks them: written from Twilio's documents.

Every fact the emulator holds about Twilio is here, once: numbers, SIDs, body
and media limits, segments, opt-out keywords, where MMS goes, error titles.
Sources are Twilio's own: the OpenAPI definition of API 2010-04-01 (OAI,
``shared/twilio/twilio_api_v2010.json``), its documentation pages and error
dictionary, and its segment calculator (CALC,
``TwilioDevEd/message-segment-calculator``), as gathered with references in
``shared/twilio-facts.md`` (§ numbers below).

This module owes nothing to textwire: it imports no ``textwire`` module but
the emulator's own, so a bug in the bot's number, segment or opt-out code
cannot hide behind the same bug in the emulator. It uses ``phonenumbers``
directly (Google's libphonenumber, which Twilio's own number handling is built
on) and ``regex`` for grapheme clusters.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import phonenumbers
import regex

__all__ = [
    "API_VERSION",
    "ERROR_TITLES",
    "MAX_BODY_UNITS",
    "MAX_CALLBACK_URL",
    "MAX_MEDIA",
    "MAX_MEDIA_BYTES",
    "MMS_COUNTRIES",
    "Segments",
    "error_title",
    "is_http_url",
    "is_service_sid",
    "mms_reaches",
    "more_info_url",
    "new_sid",
    "opt_keyword",
    "read_number",
    "read_sender",
    "region_of",
    "segments",
    "utf16_length",
    "valid_status_callback",
]

API_VERSION = "2010-04-01"

# -- SIDs --------------------------------------------------------------------------

# OAI: every SID is two letters and 32 hex digits (``^MG[0-9a-fA-F]{32}$``).
_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")


def new_sid(prefix: str) -> str:
    """A new SID of a kind (``SM``, ``MM``, ``ME``, ``PN``, ``MG``, ``AC``)."""
    return prefix + secrets.token_hex(16)


def is_service_sid(value: str) -> bool:
    """Whether ``value`` has the shape of a Messaging Service SID (OAI)."""
    return _SERVICE_SID.fullmatch(value) is not None


# -- numbers -----------------------------------------------------------------------

_WHATSAPP = "whatsapp:"
# Alphanumeric sender IDs: "up to 11 characters ... upper- and lowercase ASCII
# letters, the digits 0-9 and space ... at least one letter"
# (twilio.com/docs/glossary/what-alphanumeric-sender-id).
_ALPHA_SENDER = re.compile(r"(?=[A-Za-z0-9 ]*[A-Za-z])[A-Za-z0-9 ]{1,11}")
# Short codes are 5 or 6 digits in most countries, 3 to 8 anywhere.
_SHORT_CODE = re.compile(r"[0-9]{3,8}")


@functools.lru_cache(maxsize=4096)  # pure; asked several times a message
def read_number(raw: str, region: str = "US") -> str | None:
    """``raw`` as an E.164 number, or None when it is not a valid number.

    Twilio asks for E.164 (OAI ``To``); "Twilio will also attempt to handle
    locally formatted numbers for that country code" (twilio-facts §3.1), so a
    number without ``+`` is read in ``region``. A ``whatsapp:`` address keeps
    its prefix.
    """
    text = raw.strip()
    if text.lower().startswith(_WHATSAPP):
        number = read_number(text[len(_WHATSAPP) :], region)
        return None if number is None else _WHATSAPP + number
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def read_sender(raw: str, region: str = "US") -> str | None:
    """A ``From``: an E.164 number, a short code or an alphanumeric sender ID
    (OAI ``From``), or None when it is none of them (error 21212)."""
    text = raw.strip()
    if _SHORT_CODE.fullmatch(text):
        return text
    if _ALPHA_SENDER.fullmatch(text):
        return text
    return read_number(text, region)


@functools.lru_cache(maxsize=4096)  # pure; asked several times a message
def region_of(number: str) -> str | None:
    """The ISO 3166 country of an E.164 number (``"US"``), as Twilio names it in
    a webhook's ``FromCountry`` / ``ToCountry``; None when unknown."""
    try:
        parsed = phonenumbers.parse(number.removeprefix(_WHATSAPP), None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    return None if region in (None, "ZZ") else str(region)


# -- bodies, media, callbacks ------------------------------------------------------

MAX_BODY_UNITS = 1600
"""OAI ``Body``: "up to 1,600 characters"; error 21617 beyond it. Twilio counts
UTF-16 code units: "some glyphs such as Emoji ... will be counted as multiple
characters" (21617)."""

MAX_MEDIA = 10
"""OAI ``MediaUrl``: "up to ten"; error 21623 beyond it."""

MAX_MEDIA_BYTES = 5 * 1024 * 1024
"""twilio.com/docs/api/rest/media: "up to 10 media files that have a total size
of up to 5MB"."""

MAX_CALLBACK_URL = 4000
"""Error 21609: a StatusCallback is at most 4000 characters."""


def utf16_length(text: str) -> int:
    """The length Twilio holds against :data:`MAX_BODY_UNITS`."""
    return len(text.encode("utf-16-le")) // 2


def is_http_url(raw: str) -> bool:
    """An absolute ``http://`` or ``https://`` URL with a host, nothing else:
    the only media URLs Twilio fetches (error 21620)."""
    if any(char.isspace() or not char.isprintable() for char in raw):
        return False
    try:
        parts = urlsplit(raw)
        _ = parts.port  # a port that is not a number
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def valid_status_callback(raw: str) -> bool:
    """OAI ``StatusCallback``: "URL must contain a valid hostname and
    underscores are not allowed"; at most 4000 characters (21609)."""
    if len(raw) > MAX_CALLBACK_URL or not is_http_url(raw):
        return False
    return "_" not in (urlsplit(raw).hostname or "")


# -- where MMS goes ----------------------------------------------------------------

MMS_COUNTRIES = frozenset({"US", "CA"})
"""support.twilio.com article 223179808: "MMS messaging can only be sent within
the US and Canada" (twilio-facts §2.3)."""


def mms_reaches(number: str) -> bool:
    """Whether Twilio delivers MMS to ``number``'s country."""
    return region_of(number) in MMS_COUNTRIES


# -- opt-out keywords --------------------------------------------------------------

# twilio.com/docs/messaging/tutorials/advanced-opt-out (default keywords of a
# long code), with the opt-in and help words of help article 223134027;
# "only single-word messages will trigger the block" (twilio-facts §7).
_KEYWORDS: dict[str, Literal["stop", "start", "help"]] = {
    **dict.fromkeys(
        ("STOP", "UNSUBSCRIBE", "END", "QUIT", "STOPALL", "REVOKE", "OPTOUT"),
        "stop",
    ),
    "CANCEL": "stop",
    **dict.fromkeys(("START", "YES", "UNSTOP"), "start"),
    **dict.fromkeys(("HELP", "INFO"), "help"),
}


def opt_keyword(body: str) -> Literal["stop", "start", "help"] | None:
    """Which of Twilio's opt-out keywords ``body`` is: the whole message, one
    word, in any case."""
    return _KEYWORDS.get(body.strip().upper())


# -- segments ----------------------------------------------------------------------

# CALC (UnicodeToGSM.ts), the GSM 03.38 default alphabet without ESC, and its
# extension table (each character there is ESC + a code: two septets).
_GSM_BASIC = frozenset(
    "\n\r !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ_"
    "abcdefghijklmnopqrstuvwxyz¡£¤¥§¿ÄÅÆÇÉÑÖØÜßàäåæèéìñòöøùüΓΔΘΛΞΠΣΦΨΩ"
)
_GSM_EXTENSION = frozenset("\f[\\]^{|}~€")

# CALC Segment.ts / UserDataHeader.ts: a segment is 140 octets; once a message
# has several, each carries a 6-octet header. A GSM-7 code is 7 bits, a UCS-2
# unit 16.
_SEGMENT_BITS = 140 * 8
_HEADER_BITS = 6 * 8
_SEPTET_BITS = 7
_UNIT_BITS = 16

_GRAPHEME = regex.compile(r"\X")


@dataclass(frozen=True, slots=True)
class Segments:
    """How a body travels: its encoding and its segments.

    Attributes:
        encoding: ``"GSM-7"`` or ``"UCS-2"``.
        characters: septets (GSM-7) or UTF-16 units (UCS-2).
        count: how many segments (Twilio's ``num_segments``).
        per_segment: characters one segment holds (160/153, 70/67).
        non_gsm: the distinct graphemes that forced UCS-2, in order.
    """

    encoding: Literal["GSM-7", "UCS-2"]
    characters: int
    count: int
    per_segment: int
    non_gsm: tuple[str, ...]


def _characters(body: str) -> list[str]:
    """CALC (SegmentedMessage.ts): the body as graphemes, CR LF as two."""
    if body.isascii():
        return list(body)  # each ASCII character is a grapheme of its own
    found: list[str] = []
    for cluster in _GRAPHEME.findall(body):
        found.extend(cluster if cluster == "\r\n" else [cluster])
    return found


def _is_gsm(grapheme: str) -> bool:
    return len(grapheme) == 1 and (grapheme in _GSM_BASIC or grapheme in _GSM_EXTENSION)


def _bits(pieces: list[tuple[str, int]], room: int) -> Iterator[int]:
    """Sizes to pack, graphemes whole. A grapheme bigger than a segment cannot
    travel whole (CALC would overfill the segment): its code points go one by
    one instead."""
    for text, size in pieces:
        if size <= room:
            yield size
        else:
            yield from (_UNIT_BITS * utf16_length(char) for char in text)


def _count(sizes: list[int]) -> int:
    if sum(sizes) <= _SEGMENT_BITS:
        return 1
    room = _SEGMENT_BITS - _HEADER_BITS
    count, used = 1, 0
    for size in sizes:
        if used + size > room:  # CALC: a grapheme never straddles two segments
            count, used = count + 1, 0
        used += size
    return count


@functools.lru_cache(maxsize=4096)  # pure; asked several times a message
def segments(body: str) -> Segments:
    """Encoding and segment count of ``body`` (twilio-facts §2.1, CALC).

    UCS-2 as soon as one grapheme is not a single GSM-7 character ("If you
    include any non GSM-7 characters in your message body, we will
    automatically fall back to UCS-2 encoding").
    """
    chars = _characters(body)
    gsm = all(_is_gsm(c) for c in chars)
    unit = _SEPTET_BITS if gsm else _UNIT_BITS
    if gsm:
        pieces = [(c, _SEPTET_BITS * (2 if c in _GSM_EXTENSION else 1)) for c in chars]
    else:
        pieces = [(c, _UNIT_BITS * utf16_length(c)) for c in chars]
    room = _SEGMENT_BITS - _HEADER_BITS
    count = _count(list(_bits(pieces, room)))
    capacity = (_SEGMENT_BITS if count == 1 else room) // unit
    non_gsm = () if gsm else tuple(dict.fromkeys(c for c in chars if not _is_gsm(c)))
    return Segments(
        encoding="GSM-7" if gsm else "UCS-2",
        characters=sum(size for _, size in pieces) // unit,
        count=count,
        per_segment=capacity,
        non_gsm=non_gsm,
    )


# -- error codes -------------------------------------------------------------------

# Titles from Twilio's error dictionary (twilio-facts, source ERR).
ERROR_TITLES: dict[int, str] = {
    11200: "HTTP retrieval failure",
    11750: "TwiML response body too large",
    12100: "Document parse failure",
    20001: "Unknown parameters",
    20003: "Permission Denied",
    20004: "Method not allowed",
    20404: "Not Found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    21211: "Invalid 'To' Phone Number",
    21212: "Invalid From Number (caller ID)",
    21266: "'To' and 'From' number cannot be the same",
    21502: "Invalid callback url",
    21602: "Message body is required",
    21603: "A 'From' or 'MessagingServiceSid' parameter is required to send a message",
    21604: "The destination 'To' phone number is required to send an SMS",
    21606: "The 'From' phone number provided is not a valid message-capable "
    "Twilio phone number for this destination.",
    21609: "Invalid 'StatusCallback'",
    21610: "Attempt to send to unsubscribed recipient",
    21617: "The concatenated message body exceeds the 1600 character limit",
    21620: "Invalid media URL(s)",
    21623: "Number of media files exceeds allowed limit",
    21701: "The Messaging Service does not exist",
    21704: "The Messaging Service contains no phone numbers",
    30003: "Unreachable destination handset",
    30005: "Unknown destination handset",
    30011: "MMS not supported by the receiving phone number in this region",
    30409: "This message cannot be canceled",
}


def error_title(code: int) -> str:
    """Twilio's title of an error code (``Error 12345`` for one not listed)."""
    return ERROR_TITLES.get(code, f"Error {code}")


def more_info_url(code: int) -> str:
    """The ``more_info`` of Twilio's error body (twilio-facts §1.5)."""
    return f"https://www.twilio.com/docs/errors/{code}"

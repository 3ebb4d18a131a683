"""Phone numbers: read anything a person might type, store and send only E.164.

Twilio wants ``To`` in E.164 (``+14155550100``) and may mis-route or refuse
national digits, so every number that enters textwire goes through
:func:`normalize` first. Senders (``From``) may also be short codes or
alphanumeric sender IDs, which :func:`normalize_sender` accepts.

Built on ``phonenumbers`` with a few deliberate differences:

* letters are refused (``phonenumbers`` reads vanity numbers such as
  ``1-800-FLOWERS`` and extensions such as ``x12``);
* only digits, ``+``, whitespace, invisible formatting characters and the usual
  separators (``-./()[]~`` and their full-width forms) may appear;
* every Unicode decimal digit (full-width, Arabic-Indic, Devanagari …) counts;
* a leading ``00`` is read as an international prefix even where the region's
  own prefix is something else (``0044 20 7946 0958`` with region ``US``);
* more than one ``+`` is refused (``phonenumbers`` quietly accepts ``++1…``).

Addresses may carry a ``whatsapp:`` prefix (kept, lower-cased) or a ``tel:``
prefix (dropped, as in the RFC 3966 form ``tel:+1-415-555-0100``).
"""

from __future__ import annotations

import functools
import re
import unicodedata

import phonenumbers
from phonenumbers import (
    NumberParseException,
    PhoneMetadata,
    PhoneNumber,
    PhoneNumberFormat,
    ValidationResult,
)

from textwire.errors import InvalidPhoneNumber

__all__ = [
    "InvalidPhoneNumber",
    "country_code_of",
    "get_default_region",
    "is_e164",
    "mask",
    "normalize",
    "normalize_sender",
    "region_of",
    "set_default_region",
]

_E164_RE = re.compile(r"\+[1-9][0-9]{1,14}")
_SHORT_CODE_RE = re.compile(r"[0-9]{3,8}")
_ALPHA_SENDER_CHARS_RE = re.compile(r"[A-Za-z0-9 ]+")
_WHATSAPP = "whatsapp:"
_TEL = "tel:"
_PLUS_SIGNS = frozenset("+\uff0b")  # ASCII plus and FULLWIDTH PLUS SIGN
# Separators people (and phonenumbers' formatters) put between digit groups:
# hyphens and dashes, slashes, dots, brackets and tildes, ASCII and full-width.
# Whitespace and invisible format characters (category Cf) are accepted too.
_SEPARATORS = frozenset(
    "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc\uff0d"
    "/\uff0f.\uff0e()\uff08\uff09[]\uff3b\uff3d~\u2053\u223c\uff5e"
)
_MAX_RAW_LENGTH = 250  # the same bound phonenumbers puts on its input

_default_region = "US"


def _check_region(region: object) -> str:
    """Return ``region`` upper-cased, or raise ValueError if it is not usable."""
    if (
        not isinstance(region, str)
        or len(region) != 2
        or not region.isascii()
        or not region.isalpha()
        or region.upper() not in phonenumbers.SUPPORTED_REGIONS
    ):
        raise ValueError(
            f"unknown region {region!r}: use a two-letter ISO 3166 country code "
            "such as 'US', 'GB' or 'DE'"
        )
    return region.upper()


def get_default_region() -> str:
    """Return the region used to read numbers written without a country code.

    Returns:
        A two-letter ISO 3166 region code, ``"US"`` unless
        :func:`set_default_region` changed it.
    """
    return _default_region


def set_default_region(region: str) -> None:
    """Set the region used to read numbers written without a country code.

    Args:
        region: a two-letter ISO 3166 code known to ``phonenumbers`` (``"GB"``);
            lower case is accepted and stored upper-cased.

    Raises:
        ValueError: if ``region`` is not two letters or not a known region.
    """
    global _default_region
    _default_region = _check_region(region)


def _split_prefix(raw: str, prefix: str) -> tuple[bool, str]:
    """Split a case-insensitive address prefix such as ``whatsapp:`` off ``raw``."""
    text = raw.lstrip()
    if text[: len(prefix)].lower() == prefix:
        return True, text[len(prefix) :]
    return False, raw


def _clean(raw: str, text: str) -> str:
    """Reduce ``text`` to ``[+]ASCII digits`` or raise InvalidPhoneNumber.

    ``raw`` is the caller's original input, used only for the exception.
    """
    if not text:
        raise InvalidPhoneNumber(raw, "it is empty; give a phone number")
    if text.isspace():
        raise InvalidPhoneNumber(raw, "it is blank; give a phone number")
    if len(text) > _MAX_RAW_LENGTH:
        raise InvalidPhoneNumber(
            raw, f"it is too long ({len(text)} characters) to be a phone number"
        )
    if any(ch.isalpha() for ch in text):
        raise InvalidPhoneNumber(
            raw,
            "it contains letters; write the number with digits only "
            "(no vanity letters or extensions)",
        )
    digits: list[str] = []
    pluses = 0
    for ch in text:
        if ch.isdecimal():  # any Unicode decimal digit (category Nd)
            digits.append(str(unicodedata.decimal(ch)))
        elif ch in _PLUS_SIGNS:
            pluses += 1
            if pluses > 1:
                raise InvalidPhoneNumber(
                    raw, "it has more than one +; only the country code takes a +"
                )
            if digits:
                raise InvalidPhoneNumber(
                    raw, "it has a + after the first digit; the + goes first"
                )
        elif (
            ch.isspace()
            or ch in _SEPARATORS
            or unicodedata.category(ch) == "Cf"  # zero-width and direction marks
        ):
            continue
        else:
            raise InvalidPhoneNumber(
                raw,
                f"it contains {ch!r}, which cannot be part of a phone number; "
                "use digits, spaces, dashes, dots or brackets",
            )
    if not digits:
        raise InvalidPhoneNumber(raw, "it contains no digits; give a phone number")
    return ("+" if pluses else "") + "".join(digits)


def _parse_error_reason(exc: NumberParseException) -> str:
    """A readable reason for a ``phonenumbers`` parse failure."""
    kind = exc.error_type
    if kind == NumberParseException.INVALID_COUNTRY_CODE:
        return (
            "it starts with an unknown country code; "
            "write it as + country code, then the number"
        )
    if kind == NumberParseException.TOO_SHORT_AFTER_IDD:
        return "it is too short: too few digits follow the international prefix"
    if kind == NumberParseException.TOO_SHORT_NSN:
        return "it is too short to be a phone number; check for missing digits"
    if kind == NumberParseException.TOO_LONG:
        return "it is too long to be a phone number; check for extra digits"
    return "it is not a phone number; check the digits"


def _possibility_reason(number: PhoneNumber) -> str | None:
    """A readable reason why ``number`` cannot be a number, or None if it can."""
    result = phonenumbers.is_possible_number_with_reason(number)
    cc = number.country_code
    if result == ValidationResult.IS_POSSIBLE:
        return None
    if result == ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        return (
            f"it is too short for a +{cc} number; "
            "it looks like a local number: add the area code"
        )
    if result == ValidationResult.TOO_SHORT:
        return f"it is too short for a +{cc} number; check for missing digits"
    if result == ValidationResult.TOO_LONG:
        return f"it is too long for a +{cc} number; check for extra digits"
    if result == ValidationResult.INVALID_LENGTH:
        return (
            f"it has an invalid length (wrong number of digits) for a +{cc} "
            "number; check the digits"
        )
    return (
        f"it has an unknown country code (+{cc}); "
        "write it as + country code, then the number"
    )


def _idd_is_00(region: str) -> bool:
    """Whether ``region``'s own international prefix already covers plain ``00``."""
    metadata = PhoneMetadata.metadata_for_region(region)
    idd = metadata.international_prefix if metadata is not None else None
    return idd is not None and re.fullmatch(idd, "00") is not None


def _parse_valid(raw: str, cleaned: str, region: str) -> PhoneNumber:
    """Parse ``cleaned`` (``[+]digits``) in ``region``; return a valid number."""
    reason: str
    try:
        number = phonenumbers.parse(cleaned, region)
    except NumberParseException as exc:
        reason = _parse_error_reason(exc)
    else:
        if phonenumbers.is_valid_number(number):
            return number
        reason = _possibility_reason(number) or (
            f"it is not a valid number for country code +{number.country_code}: "
            "no such area code or number range; check the digits"
        )
    # phonenumbers reads a leading 00 as an international prefix only where the
    # region's own prefix is 00; with region US it turns 0044 20 7946 0958 into
    # +1 0044…. Many people write 00 anyway, so try it as "+" before giving up.
    if cleaned.startswith("00") and not _idd_is_00(region):
        try:
            alt = phonenumbers.parse("+" + cleaned[2:], region)
        except NumberParseException:
            pass
        else:
            if phonenumbers.is_valid_number(alt):
                return alt
    raise InvalidPhoneNumber(raw, reason)


def normalize(raw: str, region: str | None = None) -> str:
    """Read a phone number as a person wrote it and return it in E.164.

    Accepts national forms (``(415) 555-0100``, ``1-415-555-0100``), international
    ones (``+44 20 7946 0958``, ``011 44 …``, ``0044 …``), stray whitespace and
    separators, any Unicode decimal digits, a ``tel:`` prefix (dropped) and a
    ``whatsapp:`` prefix (kept, lower-cased). The result is a fixed point:
    ``normalize(normalize(x)) == normalize(x)``.

    Args:
        raw: the number as given.
        region: two-letter region for numbers without a country code;
            None means :func:`get_default_region`.

    Returns:
        The E.164 form, e.g. ``"+14155550100"`` or ``"whatsapp:+14155550100"``.

    Raises:
        InvalidPhoneNumber: if ``raw`` is not a string or not a valid number;
            ``.reason`` says why.
        ValueError: if ``region`` is not a known two-letter region code.
    """
    region = _default_region if region is None else _check_region(region)
    if not isinstance(raw, str):
        raise InvalidPhoneNumber(raw, f"it must be a string, not {type(raw).__name__}")
    return _normalize(raw, region)


# A webhook normalizes the bot's own number and a contact's on every message;
# both repeat. The answer depends on nothing but the two arguments (failures
# raise, so they are never cached).
@functools.lru_cache(maxsize=4096)
def _normalize(raw: str, region: str) -> str:
    is_whatsapp, text = _split_prefix(raw, _WHATSAPP)
    if not is_whatsapp:
        _, text = _split_prefix(raw, _TEL)
    cleaned = _clean(raw, text)
    number = _parse_valid(raw, cleaned, region)
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if not _E164_RE.fullmatch(e164):  # pragma: no cover - phonenumbers guarantee
        raise InvalidPhoneNumber(raw, "it is not a valid number; check the digits")
    return _WHATSAPP + e164 if is_whatsapp else e164


def _is_alpha_sender(text: str) -> bool:
    """1 to 11 ASCII letters, digits and spaces, at least one of them a letter."""
    return (
        len(text) <= 11
        and _ALPHA_SENDER_CHARS_RE.fullmatch(text) is not None
        and any(ch.isalpha() for ch in text)
    )


def normalize_sender(raw: str, region: str | None = None) -> str:
    """Normalize a sender (``From``): a number, short code or alphanumeric ID.

    Args:
        raw: the sender as given.
        region: as for :func:`normalize`.

    Returns:
        A short code as digits only (3 to 8 ASCII digits once spaces and dashes
        are removed, e.g. ``"89898"``); an alphanumeric sender ID (1 to 11
        ASCII letters, digits and spaces with at least one letter) stripped of
        surrounding whitespace; anything else as :func:`normalize` returns it.

    Raises:
        InvalidPhoneNumber: if ``raw`` is none of these.
        ValueError: if ``region`` is not a known two-letter region code.
    """
    if region is not None:
        region = _check_region(region)
    if not isinstance(raw, str):
        return normalize(raw, region)
    stripped = raw.strip()
    compact = stripped.replace(" ", "").replace("-", "")
    if _SHORT_CODE_RE.fullmatch(compact):
        return compact
    if _is_alpha_sender(stripped):
        return stripped
    if _split_prefix(stripped, _WHATSAPP)[0] or _split_prefix(stripped, _TEL)[0]:
        return normalize(raw, region)
    if any(ch.isalpha() for ch in stripped):
        if _ALPHA_SENDER_CHARS_RE.fullmatch(stripped):
            detail = f"has {len(stripped)} characters, at most 11 are allowed"
        else:
            detail = "may only use ASCII letters, digits and spaces"
        raise InvalidPhoneNumber(
            raw,
            "it contains letters, so it is not a phone number, and as an "
            f"alphanumeric sender ID it {detail}",
        )
    return normalize(raw, region)


def is_e164(value: str) -> bool:
    """Tell whether ``value`` is exactly in E.164 form (``+`` and 2–15 digits).

    Args:
        value: the string to test; no ``whatsapp:`` prefix, no spaces.

    Returns:
        True for strings such as ``"+14155550100"``; False otherwise, also for
        non-strings. Only the shape is checked, not whether the number exists.
    """
    return isinstance(value, str) and _E164_RE.fullmatch(value) is not None


def _parse_e164(number: str) -> PhoneNumber | None:
    """Parse an E.164 string (``whatsapp:`` prefix allowed), or return None."""
    if not isinstance(number, str):
        return None
    _, text = _split_prefix(number, _WHATSAPP)
    text = text.strip()
    if not is_e164(text):
        return None
    try:
        return phonenumbers.parse(text, None)
    except NumberParseException:
        return None


def region_of(number: str) -> str | None:
    """Return the ISO region of an E.164 number.

    Args:
        number: an E.164 number, optionally with a ``whatsapp:`` prefix.

    Returns:
        The two-letter region (``"US"``, ``"GB"``), or None if ``number`` is not
        E.164, not a valid number, or belongs to no single region (``+800``).
    """
    parsed = _parse_e164(number)
    if parsed is None:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    if region is None or region not in phonenumbers.SUPPORTED_REGIONS:
        return None
    return str(region)


def country_code_of(number: str) -> int | None:
    """Return the country calling code of an E.164 number.

    Args:
        number: an E.164 number, optionally with a ``whatsapp:`` prefix.

    Returns:
        The country code (``1``, ``44``), or None if ``number`` is not E.164
        or its country code is unknown.
    """
    parsed = _parse_e164(number)
    if parsed is None or parsed.country_code is None:
        return None
    if not phonenumbers.region_codes_for_country_code(parsed.country_code):
        return None
    return int(parsed.country_code)


def _mask_part(text: str) -> str:
    """Mask one address without prefix; see :func:`mask`."""
    if not text:
        return "-"
    if len(text) <= 6:
        return "***" if len(text) == 1 else text[0] + "***" + text[-1]
    tail = min(4, (len(text) - 3) // 2)
    head = min(5, len(text) - 3 - tail)
    return text[:head] + "***" + text[-tail:]


def mask(number: str | None) -> str:
    """Hide the middle of a number so it can be logged. Never raises.

    Args:
        number: a phone number (ideally E.164), short code, sender ID or None.

    Returns:
        ``"+1415***0100"`` for ``"+14155550100"`` (first 5 and last 4
        characters kept; fewer on shorter inputs so at least 3 stay hidden);
        first and last character for inputs of at most 6 characters
        (``"8***8"``); a ``whatsapp:`` prefix is kept as given; an alphanumeric
        sender ID is returned unchanged; None or ``""`` gives ``"-"``.
    """
    try:
        if number is None:
            return "-"
        text = number if isinstance(number, str) else str(number)
        if not text:
            return "-"
        if _is_alpha_sender(text):
            return text
        if text[: len(_WHATSAPP)].lower() == _WHATSAPP:
            return text[: len(_WHATSAPP)] + _mask_part(text[len(_WHATSAPP) :])
        return _mask_part(text)
    except Exception:  # a logging helper must never raise
        return "-"

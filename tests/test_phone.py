"""Tests for textwire.phone: normalize, normalize_sender, lookups and mask."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from textwire import errors, phone
from textwire.phone import (
    InvalidPhoneNumber,
    country_code_of,
    get_default_region,
    is_e164,
    mask,
    normalize,
    normalize_sender,
    region_of,
    set_default_region,
)

# ``\d`` and ``$`` would also accept non-ASCII digits and a trailing newline.
E164 = re.compile(r"\+[1-9][0-9]{1,14}", re.ASCII)
E164_OR_WHATSAPP = re.compile(r"(?:whatsapp:)?\+[1-9][0-9]{1,14}", re.ASCII)


@dataclass(frozen=True)
class Reject:
    """Expected outcome: InvalidPhoneNumber whose reason contains ``word``."""

    word: str


@pytest.fixture
def default_region() -> Iterator[None]:
    """Start from the "US" default and put back whatever was set before."""
    saved = get_default_region()
    set_default_region("US")
    yield
    set_default_region(saved)


# (raw, region passed to normalize or None for the default "US", expected)
CASES: list[tuple[object, str | None, str | Reject]] = [
    # --- US, national forms, default region ---
    ("(415) 555-0100", None, "+14155550100"),
    ("415.555.0100", None, "+14155550100"),
    ("1-415-555-0100", None, "+14155550100"),
    ("4155550100", None, "+14155550100"),
    ("415 555 0100", "US", "+14155550100"),
    ("+1 (212) 555-0100", None, "+12125550100"),
    ("1 (800) 555-0100", None, "+18005550100"),
    # --- stray whitespace, punctuation, invisible characters ---
    ("  \t(415)\n555-0100 \r\n", None, "+14155550100"),
    ("+1\u00a0415\u00a0555\u00a00100", None, "+14155550100"),
    ("\u202a+1 415 555 0100\u202c", None, "+14155550100"),
    ("415\u200b555\u20130100", None, "+14155550100"),
    ("[415] 555/0100", None, "+14155550100"),
    # --- non-ASCII decimal digits ---
    (
        "(\uff14\uff11\uff15) \uff15\uff15\uff15-\uff10\uff11\uff10\uff10",
        None,
        "+14155550100",
    ),
    ("\uff0b\uff11 415 555 0100", None, "+14155550100"),  # full-width plus
    (
        "\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0660\u0660",
        None,
        "+14155550100",
    ),
    (
        "+\u06f4\u06f4 \u06f2\u06f0 \u06f7\u06f9\u06f4\u06f6 \u06f0\u06f9\u06f5\u06f8",
        None,
        "+442079460958",
    ),  # Extended Arabic-Indic (Persian) digits
    (
        "\u0966\u096e\u0967\u0968\u0969\u096a \u096b\u096c\u096d\u096e\u096f",
        "IN",
        "+918123456789",
    ),  # Devanagari digits, national trunk 0
    # --- international forms ---
    ("+44 20 7946 0958", None, "+442079460958"),
    ("011 44 20 7946 0958", None, "+442079460958"),
    ("0044 20 7946 0958", None, "+442079460958"),  # 00 although US dials 011
    ("0044 20 7946 0958", "GB", "+442079460958"),
    ("0044 20 7946 0958", "JP", "+442079460958"),  # JP dials 010
    ("00 1 415 555 0100", None, "+14155550100"),
    ("+44 (0) 20 7946 0958", None, "+442079460958"),
    ("tel:+1-415-555-0100", None, "+14155550100"),
    # --- whatsapp: addresses ---
    ("whatsapp:+1 415 555 0100", None, "whatsapp:+14155550100"),
    ("WhatsApp:(415) 555-0100", None, "whatsapp:+14155550100"),
    (" whatsapp:+442079460958", "DE", "whatsapp:+442079460958"),
    # --- other countries, region passed ---
    ("(506) 234-5678", "CA", "+15062345678"),
    ("613-555-0100", "CA", "+16135550100"),
    ("020 7946 0958", "GB", "+442079460958"),
    ("07400 123456", "GB", "+447400123456"),
    ("030 123456", "DE", "+4930123456"),
    ("01512 3456789", "DE", "+4915123456789"),
    ("01 23 45 67 89", "FR", "+33123456789"),
    ("06.12.34.56.78", "FR", "+33612345678"),
    ("081234 56789", "IN", "+918123456789"),
    ("(11) 96123-4567", "BR", "+5511961234567"),
    ("02 1234 5678", "AU", "+61212345678"),
    ("0412 345 678", "AU", "+61412345678"),
    ("03-1234-5678", "JP", "+81312345678"),
    ("090-1234-5678", "JP", "+819012345678"),
    ("55 1234 5678", "MX", "+525512345678"),
    ("06 1234 5678", "IT", "+390612345678"),  # Italian leading zero is kept
    ("020 7946 0958", "gb", "+442079460958"),  # lower-case region accepted
    ("0049 30 123456", "br", "+4930123456"),  # BR's IDD is 00 + carrier code
    # --- other countries, default region US ---
    ("+49 30 123456", None, "+4930123456"),
    ("+33 6 12 34 56 78", None, "+33612345678"),
    ("+55 11 96123-4567", None, "+5511961234567"),
    ("+61 412 345 678", None, "+61412345678"),
    ("+81 90-1234-5678", None, "+819012345678"),
    ("+52 55 1234 5678", None, "+525512345678"),
    # --- rejected: not text, empty ---
    (4155550100, None, Reject("string")),
    (None, None, Reject("string")),
    (b"+14155550100", None, Reject("string")),
    ("", None, Reject("empty")),
    ("   \t\n", None, Reject("blank")),
    ("whatsapp:", None, Reject("empty")),
    ("--- ()", None, Reject("no digits")),
    ("+", None, Reject("no digits")),
    # --- rejected: letters, odd characters, pluses ---
    ("1-800-FLOWERS", None, Reject("letters")),
    ("+1 415 555 0100 x12", None, Reject("letters")),
    ("+1 415 555 0100 ext. 12", None, Reject("letters")),
    ("call 4155550100", None, Reject("letters")),
    ("+44 20 7946 O958", "GB", Reject("letters")),  # capital O for zero
    ("415 555 0100#", None, Reject("cannot be part")),
    ("415*555*0100", None, Reject("cannot be part")),
    ("4155550100\u00b2", None, Reject("cannot be part")),  # superscript two
    ("++14155550100", None, Reject("more than one +")),
    ("+1+4155550100", None, Reject("more than one +")),
    ("+44 20 7946 0958 +44", "GB", Reject("more than one +")),
    ("415+5550100", None, Reject("+ after")),
    # --- rejected: length ---
    ("12", None, Reject("too short")),
    ("555-0100", None, Reject("too short")),  # local number without area code
    ("0412", "AU", Reject("too short")),
    # 6 digits are a "possible" AU length (13 xx xx), so this is merely invalid
    ("0412 345", "AU", Reject("not a valid number")),
    ("07400 12345", "GB", Reject("not a valid number")),
    ("+52 1 55 1234 5678", None, Reject("too long")),  # old MX mobile "1"
    ("+33 1 23 45 67 8", None, Reject("too short")),
    ("+1 415 555 0100 0000", None, Reject("too long")),
    ("+49 30 1234567890123456", None, Reject("too long")),
    ("415 555 0100 / 415 555 0101", None, Reject("too long")),
    ("4" * 300, None, Reject("too long")),
    # --- rejected: not valid for its country, unknown country code ---
    ("+1 123 456 7890", None, Reject("not a valid number")),
    ("(123) 456-7890", None, Reject("not a valid number")),
    ("+44 20 7946 095", None, Reject("not a valid number")),
    ("+999 123 4567", None, Reject("country code")),
    ("+0 415 555 0100", None, Reject("country code")),
    ("011 999 123 4567", None, Reject("country code")),
    ("0044 123", None, Reject("too short")),  # 00 retried, still invalid
]


@pytest.mark.parametrize(("raw", "region", "expected"), CASES)
def test_normalize_table(
    default_region: None, raw: object, region: str | None, expected: str | Reject
) -> None:
    if isinstance(expected, Reject):
        with pytest.raises(InvalidPhoneNumber) as info:
            normalize(raw, region)  # type: ignore[arg-type]
        assert info.value.raw is raw
        assert expected.word in info.value.reason
        assert isinstance(info.value, ValueError)
        assert str(info.value).endswith(info.value.reason)
    else:
        result = normalize(raw, region)  # type: ignore[arg-type]
        assert result == expected
        assert E164_OR_WHATSAPP.fullmatch(result)
        assert normalize(result, region) == result
        assert normalize(result) == result  # E.164 needs no region


def test_table_is_large_and_covers_many_countries() -> None:
    assert len(CASES) >= 45
    valid = [e for _, _, e in CASES if isinstance(e, str)]
    regions = {region_of(e) for e in valid}
    assert {"US", "CA", "GB", "DE", "FR", "IN", "BR", "AU", "JP", "MX"} <= regions
    assert sum(isinstance(e, Reject) for _, _, e in CASES) >= 20


@pytest.mark.parametrize(
    "expected", sorted({e for _, _, e in CASES if isinstance(e, str)})
)
def test_table_expectations_are_valid_numbers(expected: str) -> None:
    number = expected.removeprefix("whatsapp:")
    assert phonenumbers.is_valid_number(phonenumbers.parse(number, None))


def test_invalid_phone_number_is_reexported() -> None:
    assert phone.InvalidPhoneNumber is errors.InvalidPhoneNumber
    assert issubclass(InvalidPhoneNumber, errors.TextwireError)
    assert "InvalidPhoneNumber" in phone.__all__


def test_vanity_number_that_phonenumbers_would_accept_is_rejected() -> None:
    # phonenumbers itself maps letters to keypad digits: 1-800-FLOWERS is valid
    parsed = phonenumbers.parse("1-800-FLOWERS", "US")
    assert phonenumbers.is_valid_number(parsed)
    with pytest.raises(InvalidPhoneNumber, match="letters"):
        normalize("1-800-FLOWERS", "US")


def test_leading_00_needs_our_help_in_the_us() -> None:
    parsed = phonenumbers.parse("0044 20 7946 0958", "US")
    assert parsed.country_code == 1  # phonenumbers alone reads +1 0044…
    assert normalize("0044 20 7946 0958", "US") == "+442079460958"


# --- default region ---------------------------------------------------------


def test_default_region_is_us_initially(default_region: None) -> None:
    assert get_default_region() == "US"
    assert normalize("415 555 0100") == "+14155550100"


def test_set_default_region_changes_how_national_numbers_are_read(
    default_region: None,
) -> None:
    set_default_region("GB")
    assert get_default_region() == "GB"
    assert normalize("020 7946 0958") == "+442079460958"
    assert normalize("+1 415 555 0100") == "+14155550100"
    assert normalize("0044 20 7946 0958") == "+442079460958"
    assert normalize("4155550100", "US") == "+14155550100"  # explicit wins
    set_default_region("de")
    assert get_default_region() == "DE"
    assert normalize("030 123456") == "+4930123456"


@pytest.mark.parametrize("bad", ["", "U", "USA", "XX", "ZZ", "001", "1A", "U S", 1])
def test_set_default_region_rejects_unknown_codes(
    default_region: None, bad: object
) -> None:
    with pytest.raises(ValueError, match="region"):
        set_default_region(bad)  # type: ignore[arg-type]
    assert get_default_region() == "US"


@pytest.mark.parametrize("bad", ["XX", "usa", ""])
def test_normalize_rejects_unknown_region(bad: str) -> None:
    with pytest.raises(ValueError, match="region") as info:
        normalize("+14155550100", bad)
    assert not isinstance(info.value, InvalidPhoneNumber)
    with pytest.raises(ValueError, match="region"):
        normalize_sender("Textwire", bad)


# --- normalize_sender ---------------------------------------------------------

SENDER_CASES: list[tuple[object, str | None, str | Reject]] = [
    ("89898", None, "89898"),
    ("898 98", None, "89898"),
    ("12-34", "GB", "1234"),
    ("123", None, "123"),
    ("12345678", None, "12345678"),  # 8 digits: a short code, not a number
    ("5550100", None, "5550100"),  # 7 digits: a short code, not a local number
    (" 246810\n", None, "246810"),
    ("Textwire", None, "Textwire"),
    ("  My Shop ", None, "My Shop"),
    ("A", None, "A"),
    ("Shop 24 7", None, "Shop 24 7"),
    ("ABCDEFGHIJK", None, "ABCDEFGHIJK"),  # 11 characters: the maximum
    ("+1 415 555 0100", None, "+14155550100"),
    ("(415) 555-0100", None, "+14155550100"),
    ("020 7946 0958", "GB", "+442079460958"),
    ("whatsapp:+14155550100", None, "whatsapp:+14155550100"),
    ("tel:+44-20-7946-0958", None, "+442079460958"),
    ("", None, Reject("empty")),
    ("   ", None, Reject("blank")),
    ("12", None, Reject("too short")),  # two digits: neither short code nor number
    ("123456789", None, Reject("too short")),  # 9 digits: too long for a short code
    ("ab!c", None, Reject("letters")),
    ("TextwireBot1", None, Reject("at most 11")),  # 12 characters
    ("Caf\u00e9", None, Reject("ASCII")),
    ("Text_wire", None, Reject("ASCII")),
    ("\uff18\uff19\uff18\uff19\uff18", None, Reject("too short")),  # not ASCII
    (89898, None, Reject("string")),
]


@pytest.mark.parametrize(("raw", "region", "expected"), SENDER_CASES)
def test_normalize_sender(
    default_region: None, raw: object, region: str | None, expected: str | Reject
) -> None:
    if isinstance(expected, Reject):
        with pytest.raises(InvalidPhoneNumber) as info:
            normalize_sender(raw, region)  # type: ignore[arg-type]
        assert info.value.raw is raw
        assert expected.word in info.value.reason
    else:
        result = normalize_sender(raw, region)  # type: ignore[arg-type]
        assert result == expected
        assert normalize_sender(result, region) == result


def test_normalize_rejects_what_only_senders_may_be(default_region: None) -> None:
    with pytest.raises(InvalidPhoneNumber, match="letters"):
        normalize("Textwire")
    with pytest.raises(InvalidPhoneNumber, match="too short"):
        normalize("89898")


# --- is_e164, region_of, country_code_of -----------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+14155550100", True),
        ("+442079460958", True),
        ("+12", True),
        ("+123456789012345", True),  # 15 digits
        ("+1234567890123456", False),  # 16 digits
        ("+04155550100", False),
        ("14155550100", False),
        ("+1 415 555 0100", False),
        ("+14155550100\n", False),
        ("+\uff11\uff14\uff11\uff15", False),  # full-width digits
        ("whatsapp:+14155550100", False),
        ("", False),
        (None, False),
        (14155550100, False),
    ],
)
def test_is_e164(value: object, expected: bool) -> None:
    assert is_e164(value) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("number", "region", "code"),
    [
        ("+14155550100", "US", 1),
        ("+16135550100", "CA", 1),
        ("+442079460958", "GB", 44),
        ("+4930123456", "DE", 49),
        ("+33612345678", "FR", 33),
        ("+918123456789", "IN", 91),
        ("+5511961234567", "BR", 55),
        ("+61412345678", "AU", 61),
        ("+819012345678", "JP", 81),
        ("+525512345678", "MX", 52),
        ("whatsapp:+442079460958", "GB", 44),
        ("+11234567890", None, 1),  # invalid +1 number: no single region
        ("+80012345678", None, 800),  # international freephone: no region
        ("+99912345678", None, None),  # unknown country code
        ("4155550100", None, None),  # not E.164
        ("+1 415 555 0100", None, None),
        ("", None, None),
        ("Textwire", None, None),
    ],
)
def test_region_of_and_country_code_of(
    number: str, region: str | None, code: int | None
) -> None:
    assert region_of(number) == region
    assert country_code_of(number) == code


def test_lookups_accept_none_without_raising() -> None:
    assert region_of(None) is None  # type: ignore[arg-type]
    assert country_code_of(None) is None  # type: ignore[arg-type]


# --- mask -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+14155550100", "+1415***0100"),
        ("+442079460958", "+4420***0958"),
        ("+5511961234567", "+5511***4567"),
        ("whatsapp:+14155550100", "whatsapp:+1415***0100"),
        ("89898", "8***8"),
        ("123456", "1***6"),
        ("12", "1***2"),
        ("7", "***"),
        ("Textwire", "Textwire"),
        ("My Shop", "My Shop"),
        (None, "-"),
        ("", "-"),
        ("whatsapp:", "whatsapp:-"),
    ],
)
def test_mask(value: str | None, expected: str) -> None:
    assert mask(value) == expected


@pytest.mark.parametrize(
    "value", ["+1415555", "12345678", "+4412345678", "4155550100", "+1 415 555 0100"]
)
def test_mask_hides_at_least_three_characters(value: str) -> None:
    masked = mask(value)
    assert "***" in masked
    visible = len(masked) - 3
    assert visible <= len(value) - 3
    assert masked.startswith(value[:2]) and masked.endswith(value[-2:])


def test_mask_never_raises_on_odd_input() -> None:
    assert mask(14155550100) == "1415***0100"  # type: ignore[arg-type]
    assert isinstance(mask(object()), str)  # type: ignore[arg-type]


# --- property tests -----------------------------------------------------------


@settings(max_examples=200, deadline=None, database=None)
@given(st.text())
def test_normalize_any_text_is_rejected_or_a_fixed_point(raw: str) -> None:
    try:
        result = normalize(raw, "US")
    except InvalidPhoneNumber as exc:
        assert exc.raw is raw
        assert exc.reason
        return
    assert E164_OR_WHATSAPP.fullmatch(result)
    assert normalize(result, "US") == result


_PHONEISH = st.text(
    alphabet=st.sampled_from(list("0123456789+ -.()\t") + ["\uff15", "\u0661"]),
    max_size=20,
)


@settings(max_examples=200, deadline=None, database=None)
@given(_PHONEISH, st.sampled_from(["US", "GB", "DE", "IN", "BR"]))
def test_normalize_phone_like_text_is_rejected_or_a_fixed_point(
    raw: str, region: str
) -> None:
    try:
        result = normalize(raw, region)
    except InvalidPhoneNumber as exc:
        assert exc.raw is raw
        return
    assert E164.fullmatch(result)
    assert phonenumbers.is_valid_number(phonenumbers.parse(result, None))
    assert normalize(result, region) == result
    assert normalize(result, "JP") == result


SAMPLE_REGIONS = [
    "US", "CA", "GB", "DE", "FR", "IN", "BR", "AU", "JP", "MX", "IT", "ES",
    "NL", "CH", "SE", "PL", "RU", "AR", "CN", "KR", "ZA", "NG", "EG", "AE",
    "SG", "NZ", "IE", "TR", "ID", "PH",
]  # fmt: skip
EXAMPLES = [
    (region, number)
    for region in SAMPLE_REGIONS
    for kind in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE)
    if (number := phonenumbers.example_number_for_type(region, kind)) is not None
    and phonenumbers.is_valid_number(number)
]
FORMATS = [
    PhoneNumberFormat.NATIONAL,
    PhoneNumberFormat.INTERNATIONAL,
    PhoneNumberFormat.E164,
    PhoneNumberFormat.RFC3966,
]
NOISE = [
    "",
    "",
    "",
    " ",
    "  ",
    "-",
    ".",
    "\t",
    "\n",
    "\u00a0",
    "\u200b",
    "(",
    ")",
    " - ",
]
DIGIT_ZEROS = [ord("0"), 0xFF10, 0x0660, 0x06F0, 0x0966]  # ASCII, full-width, …


def test_examples_cover_every_sampled_region() -> None:
    assert {region for region, _ in EXAMPLES} == set(SAMPLE_REGIONS)


@st.composite
def written_numbers(draw: st.DrawFn) -> tuple[str, str, str]:
    """A valid example number as a person might write it, its region and E.164."""
    region, number = draw(st.sampled_from(EXAMPLES))
    text = phonenumbers.format_number(number, draw(st.sampled_from(FORMATS)))
    zero = draw(st.sampled_from(DIGIT_ZEROS))
    body = []
    for ch in text:
        if ch.isdigit():
            body.append(chr(zero + int(ch)))
            body.append(draw(st.sampled_from(NOISE)))  # between or after digits
        elif ch in " -":
            body.append(draw(st.sampled_from([" ", "-", ".", "  ", "\t", " / "])))
        else:
            body.append(ch)  # keep "tel:", "+" and brackets as formatted
    lead = draw(st.sampled_from(["", " ", "\t", "\n ", "\u3000"]))
    trail = draw(st.sampled_from(["", " ", "\n", "\r\n", " \t"]))
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    return lead + "".join(body) + trail, region, e164


@settings(max_examples=200, deadline=None, database=None)
@given(written_numbers())
def test_normalize_reads_written_example_numbers(
    case: tuple[str, str, str],
) -> None:
    raw, region, e164 = case
    assert normalize(raw, region) == e164
    assert normalize(e164) == e164
    if not raw.lstrip().startswith("tel:"):
        assert normalize("whatsapp:" + raw, region) == "whatsapp:" + e164
    assert region_of(e164) == region
    assert country_code_of(e164) == phonenumbers.country_code_for_region(region)

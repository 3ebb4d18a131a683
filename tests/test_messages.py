"""Tests for textwire.messages: segment math, Reply limits, split_body, Inbound."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

import textwire.messages
from textwire.errors import (
    InvalidMessage,
    InvalidPhoneNumber,
    MalformedWebhook,
    WebhookError,
)
from textwire.messages import (
    GSM7_BASIC,
    GSM7_EXTENDED,
    MAX_BODY_CHARS,
    MAX_MEDIA,
    Inbound,
    Media,
    Reply,
    SegmentInfo,
    check_media_url,
    segment_info,
    split_body,
)

EMOJI = "\N{GRINNING FACE}"  # U+1F600: two UTF-16 units
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
MESSAGE_SID = "MM" + "fedcba9876543210" * 2
SMS_SID = "SM" + "a1b2c3d4e5f60718" * 2
SERVICE_SID = "MG" + "9" * 32
MEDIA_BASE = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages"


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# --------------------------------------------------------------------------- GSM-7


def test_gsm7_basic_table_is_the_gsm_0338_default_alphabet() -> None:
    expected = (
        "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
        "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
    )
    assert len(expected) == 127  # 128 codes minus ESC
    assert frozenset(expected) == GSM7_BASIC
    assert "\x1b" not in GSM7_BASIC


def test_gsm7_extension_table() -> None:
    assert frozenset("\f^{}\\[~]|€") == GSM7_EXTENDED
    assert not GSM7_BASIC & GSM7_EXTENDED


@pytest.mark.parametrize("char", ["`", "ç", "“", "’", "\t", "\x1b", "Ä", "é"])
def test_characters_commonly_mistaken(char: str) -> None:
    # Only capital Ç, Ä and é are GSM-7; backtick, tab, ESC, ç and curly quotes
    # are not.
    assert (char in GSM7_BASIC) == (char in "ÄéÇ")


def test_empty_body_is_one_gsm7_segment() -> None:
    assert segment_info("") == SegmentInfo("GSM-7", 0, 1, ())


@pytest.mark.parametrize(
    ("body", "characters", "segments"),
    [
        ("a", 1, 1),
        ("a" * 160, 160, 1),
        ("a" * 161, 161, 2),
        ("a" * 153 * 2, 306, 2),
        ("a" * (153 * 2 + 1), 307, 3),
        ("A" * 1600, 1600, 11),
        ("€" * 80, 160, 1),
        ("€" * 81, 162, 2),
        ("A" * 159 + "€", 161, 2),
        ("é" * 70, 70, 1),
        ("{[~]}", 10, 1),
        ("line one\r\nline two", 18, 1),
    ],
)
def test_gsm7_segments(body: str, characters: int, segments: int) -> None:
    info = segment_info(body)
    assert info.encoding == "GSM-7"
    assert info.characters == characters
    assert info.segments == segments
    assert info.unicode_chars == ()


def test_extension_char_never_split_across_gsm7_segments() -> None:
    # 152 + 2 + 152 = 306 septets would fill two 153-septet segments exactly, but
    # the euro's escape pair cannot straddle them: it moves to segment two.
    assert segment_info("a" * 152 + "€" + "a" * 152).segments == 3
    # With the euro ending segment one exactly, two segments suffice.
    assert segment_info("a" * 151 + "€" + "a" * 153).segments == 2


def test_extension_char_moves_even_when_the_total_would_fit() -> None:
    info = segment_info("a" * 152 + "€" + "b" * 10)
    assert info.characters == 164
    assert info.segments == 2


# --------------------------------------------------------------------------- UCS-2


@pytest.mark.parametrize(
    ("body", "characters", "segments"),
    [
        ("ç" * 70, 70, 1),
        ("ç" * 71, 71, 2),
        ("ç" * 67 * 2, 134, 2),
        ("ç" * (67 * 2 + 1), 135, 3),
        ("A" * 68 + EMOJI, 70, 1),
        ("A" * 69 + EMOJI, 71, 2),
        (EMOJI * 35, 70, 1),
        ("“hi”", 4, 1),
    ],
)
def test_ucs2_segments(body: str, characters: int, segments: int) -> None:
    info = segment_info(body)
    assert info.encoding == "UCS-2"
    assert info.characters == characters
    assert info.segments == segments


def test_surrogate_pair_never_split_across_ucs2_segments() -> None:
    # 66 + 2 + 66 = 134 units would be two full segments, but the emoji cannot be
    # cut after its first unit: it starts segment two and pushes a char into three.
    body = "ç" * 66 + EMOJI + "ç" * 66
    assert segment_info(body).characters == 134
    assert segment_info(body).segments == 3
    assert segment_info("ç" * 65 + EMOJI + "ç" * 67).segments == 2


def test_emoji_counts_two_units() -> None:
    info = segment_info(EMOJI)
    assert info == SegmentInfo("UCS-2", 2, 1, (EMOJI,))


def test_unicode_chars_are_distinct_and_in_order_of_first_appearance() -> None:
    info = segment_info(f"Zażółć {EMOJI} gęślą {EMOJI} jaźń ł")
    assert info.unicode_chars == (
        "ż", "ó", "ł", "ć", EMOJI, "ę", "ś", "ą", "ź", "ń"
    )  # fmt: skip
    # GSM-7 characters never appear in the list (ò and ö are GSM-7, ó is not)
    assert "a" not in info.unicode_chars
    assert segment_info("òö").unicode_chars == ()


def test_one_non_gsm_char_flips_the_whole_text() -> None:
    assert segment_info("a" * 100).segments == 1
    info = segment_info("a" * 100 + "ç")
    assert (info.encoding, info.characters, info.segments) == ("UCS-2", 101, 2)
    assert info.unicode_chars == ("ç",)


# --------------------------------------------------------------------------- str


def test_str_gsm7() -> None:
    assert str(segment_info("a" * 42)) == "GSM-7, 42 chars, 1 segment"
    assert str(segment_info("a" * 161)) == "GSM-7, 161 chars, 2 segments"
    assert str(segment_info("")) == "GSM-7, 0 chars, 1 segment"
    assert str(segment_info("a")) == "GSM-7, 1 char, 1 segment"


def test_str_ucs2_names_the_culprits() -> None:
    body = EMOJI + "ł" + "a" * 72
    assert str(segment_info(body)) == (
        "UCS-2, 75 chars, 2 segments (because of '😀', 'ł')"
    )


def test_str_lists_at_most_five_culprits() -> None:
    text = str(segment_info("абвгдежз"))
    assert text.endswith("(because of 'а', 'б', 'в', 'г', 'д' and 3 more)")


@pytest.mark.parametrize(
    ("body", "per_segment"),
    [
        ("a", 160),
        ("a" * 161, 153),
        ("ç", 70),
        ("ç" * 71, 67),
    ],
)
def test_per_segment(body: str, per_segment: int) -> None:
    assert segment_info(body).per_segment == per_segment


def test_segment_info_is_frozen() -> None:
    info = segment_info("hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.segments = 3  # type: ignore[misc]


def _reference_segments(body: str) -> int:
    """Build the segments explicitly, one character at a time."""
    gsm = all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in body)

    def cost(char: str) -> int:
        if gsm:
            return 2 if char in GSM7_EXTENDED else 1
        return utf16_len(char)

    single, multi = (160, 153) if gsm else (70, 67)
    if sum(cost(c) for c in body) <= single:
        return 1
    segments: list[list[str]] = [[]]
    for char in body:
        if sum(cost(c) for c in segments[-1]) + cost(char) > multi:
            segments.append([])
        segments[-1].append(char)
    return len(segments)


@settings(database=None, max_examples=200)
@given(st.text(alphabet=st.sampled_from(list("ab €[ç") + [EMOJI]), max_size=400))
def test_segment_count_matches_explicit_segmentation(body: str) -> None:
    assert segment_info(body).segments == _reference_segments(body)


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a.png",
        "http://example.com/a.png",
        "HTTPS://EXAMPLE.COM/A.PNG",
        "https://example.com:8443/media/cat.jpg?sig=abc&x=%20",
        "http://127.0.0.1:5000/static/map.png",
        "https://[::1]/x.gif",
    ],
)
def test_check_media_url_accepts_absolute_http_urls(url: str) -> None:
    assert check_media_url(url) == url


def test_check_media_url_strips() -> None:
    assert check_media_url("  https://example.com/a.png\n") == (
        "https://example.com/a.png"
    )


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "/static/a.png",
        "static/a.png",
        "example.com/a.png",
        "//example.com/a.png",
        "ftp://example.com/a.png",
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "file:///etc/passwd",
        "mailto:someone@example.com",
        "https://",
        "https:///a.png",
        "https://example.com/a b.png",
        "https://example.com/a\tb.png",
        "https://exa mple.com/a.png",
        "https://example.com/a\x00.png",
        "https://example.com:port/a.png",
        "https://[::1/a.png",
    ],
)
def test_check_media_url_rejects(url: str) -> None:
    with pytest.raises(InvalidMessage, match="media URL"):
        check_media_url(url)


def test_check_media_url_error_names_the_url() -> None:
    with pytest.raises(InvalidMessage) as info:
        check_media_url("ftp://example.com/a.png")
    assert "'ftp://example.com/a.png'" in str(info.value)
    assert "http" in str(info.value)


def test_check_media_url_truncates_a_long_url_in_the_error() -> None:
    url = "ftp://example.com/" + "x" * 300
    with pytest.raises(InvalidMessage) as info:
        check_media_url(url)
    message = str(info.value)
    assert url not in message
    assert "ftp://example.com/xxx" in message
    assert "x" * 80 not in message


def test_invalid_message_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        check_media_url("nope")


# --------------------------------------------------------------------------- Reply


def test_reply_with_text_and_media() -> None:
    reply = Reply("Hi", media=["https://example.com/a.png"])
    assert reply.body == "Hi"
    assert reply.media == ("https://example.com/a.png",)
    assert isinstance(reply.media, tuple)


def test_reply_positional_media_and_defaults() -> None:
    assert Reply("Hi").media == ()
    assert Reply("Hi", ("https://e.x/a.png",)).media == ("https://e.x/a.png",)


def test_reply_single_string_media_becomes_a_tuple() -> None:
    # A lone str must not be read as a sequence of one-character URLs.
    reply = Reply(media="https://example.com/a.png")
    assert reply.media == ("https://example.com/a.png",)
    assert reply.body == ""


def test_reply_strips_media_urls() -> None:
    assert Reply(media=[" https://example.com/a.png "]).media == (
        "https://example.com/a.png",
    )


def test_reply_media_only_and_whitespace_body_with_media_are_fine() -> None:
    assert Reply(media=["https://example.com/a.png"]).body == ""
    assert Reply("  ", media=["https://example.com/a.png"]).body == "  "


def test_reply_keeps_body_exactly() -> None:
    assert Reply("  hi\n").body == "  hi\n"


def test_reply_ten_media_is_the_limit() -> None:
    urls = [f"https://example.com/{i}.png" for i in range(MAX_MEDIA)]
    assert MAX_MEDIA == 10
    assert len(Reply("ten", media=urls).media) == 10


def test_reply_eleven_media_is_refused() -> None:
    urls = [f"https://example.com/{i}.png" for i in range(11)]
    with pytest.raises(InvalidMessage) as info:
        Reply("eleven", media=urls)
    message = str(info.value)
    assert "10" in message
    assert "11" in message


def test_reply_body_at_the_limit() -> None:
    assert MAX_BODY_CHARS == 1600
    assert len(Reply("a" * 1600).body) == 1600


def test_reply_body_over_the_limit_is_refused_not_truncated() -> None:
    with pytest.raises(InvalidMessage) as info:
        Reply("a" * 1601)
    message = str(info.value)
    assert "1601" in message
    assert "1600" in message
    assert "textwire.messages.split_body()" in message
    assert "aaaa" not in message  # never the body itself


def test_reply_body_limit_counts_emoji_as_two() -> None:
    assert Reply(EMOJI * 800).body == EMOJI * 800  # 1600 units
    with pytest.raises(InvalidMessage, match="1601"):
        Reply(EMOJI * 800 + "a")
    with pytest.raises(InvalidMessage, match="1602"):
        Reply(EMOJI * 801)  # only 801 code points, but 1602 UTF-16 units


@pytest.mark.parametrize(
    "url",
    [
        "/static/a.png",
        "ftp://example.com/a.png",
        "javascript:alert(1)",
        "https://example.com/a b.png",
        "",
    ],
)
def test_reply_refuses_bad_media_urls(url: str) -> None:
    with pytest.raises(InvalidMessage, match="media URL"):
        Reply("look", media=["https://example.com/ok.png", url])


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"body": ""}, {"body": "   \n\t"}, {"body": "", "media": []}],
)
def test_empty_reply_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidMessage, match="empty reply"):
        Reply(**kwargs)  # type: ignore[arg-type]


def test_reply_body_must_be_a_str() -> None:
    with pytest.raises(InvalidMessage, match="str"):
        Reply(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidMessage, match="str"):
        Reply(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "media",
    [[b"https://example.com/a.png"], [None], ["https://example.com/a.png", 3]],
)
def test_reply_media_entries_must_be_str(media: list[object]) -> None:
    with pytest.raises(InvalidMessage, match=r"media\[\d\]"):
        Reply("x", media=media)  # type: ignore[arg-type]


@pytest.mark.parametrize("media", [{"https://example.com/a.png"}, 5, None])
def test_reply_media_must_be_a_sequence_or_a_str(media: object) -> None:
    with pytest.raises(InvalidMessage, match="media"):
        Reply("x", media=media)  # type: ignore[arg-type]


def test_reply_is_frozen_and_hashable() -> None:
    reply = Reply("hi", media=["https://example.com/a.png"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        reply.body = "bye"  # type: ignore[misc]
    assert reply == Reply("hi", ("https://example.com/a.png",))
    assert hash(reply) == hash(Reply("hi", ["https://example.com/a.png"]))


def test_reply_segments() -> None:
    assert Reply("a" * 161).segments == SegmentInfo("GSM-7", 161, 2)
    assert Reply(f"hi {EMOJI}").segments.encoding == "UCS-2"


# --------------------------------------------------------------------------- split


def test_split_body_short_text_is_one_part() -> None:
    assert split_body("hello") == ["hello"]
    assert split_body("a" * 1600) == ["a" * 1600]
    assert split_body("") == [""]


def test_split_body_breaks_after_whitespace() -> None:
    assert split_body("aaaa bbbb cc", limit=10) == ["aaaa bbbb ", "cc"]


def test_split_body_breaks_at_a_newline() -> None:
    assert split_body("aaaaaaaaa\nbbbbbb", limit=12) == ["aaaaaaaaa\n", "bbbbbb"]


def test_split_body_without_whitespace_cuts_at_the_limit() -> None:
    assert split_body("a" * 25, limit=10) == ["a" * 10, "a" * 10, "a" * 5]


def test_split_body_ignores_whitespace_before_the_last_fifth() -> None:
    # The only space is at unit 3 of a 10-unit window: breaking there would make a
    # needlessly short part, so the text is cut at the limit instead.
    assert split_body("ab " + "c" * 20, limit=10) == [
        "ab ccccccc",
        "cccccccccc",
        "ccc",
    ]


def test_split_body_uses_the_last_whitespace_in_the_window() -> None:
    text = "one two three four five six seven"
    parts = split_body(text, limit=15)
    assert parts == ["one two three ", "four five six ", "seven"]


def test_split_body_never_splits_a_surrogate_pair() -> None:
    parts = split_body(EMOJI * 10, limit=5)
    assert parts == [EMOJI * 2] * 5
    assert all(utf16_len(p) <= 5 for p in parts)


def test_split_body_counts_utf16_units() -> None:
    parts = split_body(EMOJI * 1000)
    assert parts == [EMOJI * 800, EMOJI * 200]


def test_split_body_parts_are_valid_replies() -> None:
    words = [f"word{i} {EMOJI}" for i in range(1000)]
    text = "\n".join(words)
    parts = split_body(text)
    assert len(parts) > 1
    assert "".join(parts) == text
    for part in parts:
        assert Reply(part).body == part
        assert part[-1].isspace() or part is parts[-1]


def test_split_body_limit_must_hold_an_emoji() -> None:
    with pytest.raises(ValueError, match="limit"):
        split_body("abc", limit=1)
    assert split_body("abc", limit=2) == ["ab", "c"]


_SPLIT_ALPHABET = st.sampled_from(list("ab \n\t€ç") + [EMOJI, "\N{PILE OF POO}"])


@settings(database=None, max_examples=300)
@given(
    body=st.text(alphabet=_SPLIT_ALPHABET, max_size=300),
    limit=st.integers(min_value=2, max_value=60),
)
def test_split_body_round_trip_and_limit(body: str, limit: int) -> None:
    parts = split_body(body, limit=limit)
    assert "".join(parts) == body
    assert all(utf16_len(part) <= limit for part in parts)
    # Every part encodes on its own: no lone surrogate halves anywhere.
    for part in parts:
        part.encode("utf-16-le")
    if body:
        assert all(parts)
    # No part is shorter than it has to be: either the next character does not
    # fit, or the part ends with whitespace in the last fifth of its window.
    for part, following in zip(parts, parts[1:], strict=False):
        next_fits = utf16_len(part) + utf16_len(following[0]) <= limit
        if next_fits:
            assert part[-1].isspace()
            assert utf16_len(part) >= limit - limit // 5


@settings(database=None, max_examples=50)
@given(st.text(max_size=4000))
def test_split_body_round_trip_any_text(body: str) -> None:
    parts = split_body(body)
    assert "".join(parts) == body
    assert all(utf16_len(part) <= MAX_BODY_CHARS for part in parts)


# --------------------------------------------------------------------------- Inbound


def twilio_form(**changes: str | None) -> dict[str, str]:
    """A realistic inbound MMS webhook form; a change of None removes the key."""
    form = {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": MESSAGE_SID,
        "NumMedia": "2",
        "ToCity": "SAN FRANCISCO",
        "FromZip": "94105",
        "SmsSid": MESSAGE_SID,
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "SAN FRANCISCO",
        "Body": "  Here are the photos \N{CAMERA}\n",
        "FromCountry": "US",
        "To": "+14155550199",
        "MessagingServiceSid": SERVICE_SID,
        "ToZip": "94107",
        "NumSegments": "1",
        "MessageSid": MESSAGE_SID,
        "AccountSid": ACCOUNT_SID,
        "From": "+14155550100",
        "ApiVersion": "2010-04-01",
        "MediaUrl0": f"{MEDIA_BASE}/{MESSAGE_SID}/Media/ME{'1' * 32}",
        "MediaContentType0": "image/jpeg",
        "MediaUrl1": f"{MEDIA_BASE}/{MESSAGE_SID}/Media/ME{'2' * 32}",
        "MediaContentType1": "image/png",
    }
    for key, value in changes.items():
        if value is None:
            form.pop(key, None)
        else:
            form[key] = value
    return form


def sms_form(**changes: str | None) -> dict[str, str]:
    """A plain SMS form without media."""
    base: dict[str, str | None] = {
        "NumMedia": "0",
        "MediaUrl0": None,
        "MediaUrl1": None,
        "MediaContentType0": None,
        "MediaContentType1": None,
        "Body": "hello",
    }
    base.update(changes)
    return twilio_form(**base)


def test_from_form_full_realistic_mms() -> None:
    form = twilio_form()
    msg = Inbound.from_form(form)
    assert msg.sid == MESSAGE_SID
    assert msg.account_sid == ACCOUNT_SID
    assert msg.from_ == "+14155550100"
    assert msg.to == "+14155550199"
    assert msg.body == "  Here are the photos \N{CAMERA}\n"
    assert msg.text == "Here are the photos \N{CAMERA}"
    assert msg.has_media
    assert msg.media == (
        Media(form["MediaUrl0"], "image/jpeg"),
        Media(form["MediaUrl1"], "image/png"),
    )
    assert msg.messaging_service_sid == SERVICE_SID
    assert msg.num_segments == 1
    assert msg.from_country == "US"
    assert msg.to_country == "US"
    assert dict(msg.params) == form
    assert msg.params["SmsMessageSid"] == MESSAGE_SID
    assert msg.params["ApiVersion"] == "2010-04-01"
    assert msg.params["FromCity"] == "SAN FRANCISCO"


def test_inbound_is_frozen_and_params_read_only() -> None:
    form = twilio_form()
    msg = Inbound.from_form(form)
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.body = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        msg.params["Body"] = "changed"  # type: ignore[index]
    form["Body"] = "mutated after parsing"
    assert msg.params["Body"] != "mutated after parsing"
    assert isinstance(msg.media, tuple)
    hash(msg)  # usable as a set member / dict key


def test_inbound_repr_leaves_out_params() -> None:
    assert "params" not in repr(Inbound.from_form(sms_form()))


def test_inbound_constructed_directly_copies_params() -> None:
    params = {"Body": "hi"}
    msg = Inbound(
        sid=SMS_SID,
        account_sid=ACCOUNT_SID,
        from_="+14155550100",
        to="+14155550199",
        body="hi",
        media=(),
        messaging_service_sid=None,
        num_segments=None,
        from_country=None,
        to_country=None,
        params=params,
    )
    params["Body"] = "changed"
    assert msg.params == {"Body": "hi"}
    assert not msg.has_media


def test_from_form_plain_sms() -> None:
    msg = Inbound.from_form(sms_form(MessageSid=SMS_SID, SmsSid=SMS_SID))
    assert msg.sid == SMS_SID
    assert msg.media == ()
    assert not msg.has_media
    assert msg.text == "hello"


def test_from_form_accepts_a_multidict_and_takes_first_values() -> None:
    form = MultiDict(list(sms_form(Body="first").items()))
    form.add("Body", "second")
    msg = Inbound.from_form(form)
    assert msg.body == "first"
    assert msg.params["Body"] == "first"


def test_from_form_minimal() -> None:
    form = {
        "MessageSid": SMS_SID,
        "AccountSid": ACCOUNT_SID,
        "From": "+14155550100",
        "To": "+14155550199",
    }
    msg = Inbound.from_form(form)
    assert msg.body == ""
    assert msg.text == ""
    assert msg.media == ()
    assert msg.messaging_service_sid is None
    assert msg.num_segments is None
    assert msg.from_country is None
    assert msg.to_country is None


def test_from_form_falls_back_to_smssid() -> None:
    msg = Inbound.from_form(sms_form(MessageSid=None, SmsSid=SMS_SID))
    assert msg.sid == SMS_SID
    msg = Inbound.from_form(sms_form(MessageSid="", SmsSid=SMS_SID))
    assert msg.sid == SMS_SID


def test_from_form_empty_optional_fields_are_none() -> None:
    msg = Inbound.from_form(
        sms_form(MessagingServiceSid="", FromCountry="", ToCountry="")
    )
    assert msg.messaging_service_sid is None
    assert msg.from_country is None
    assert msg.to_country is None


def test_from_form_media_without_content_type() -> None:
    msg = Inbound.from_form(twilio_form(MediaContentType1=None))
    assert msg.media[1].content_type is None
    assert msg.media[0].content_type == "image/jpeg"


def test_from_form_ignores_media_urls_beyond_num_media() -> None:
    msg = Inbound.from_form(twilio_form(NumMedia="1"))
    assert len(msg.media) == 1
    assert "MediaUrl1" in msg.params


def test_from_form_missing_num_media_means_none() -> None:
    msg = Inbound.from_form(sms_form(NumMedia=None))
    assert msg.media == ()


def test_from_form_accepts_up_to_100_media() -> None:
    urls = {f"MediaUrl{i}": f"{MEDIA_BASE}/m/{i}" for i in range(100)}
    msg = Inbound.from_form(sms_form(NumMedia="100", **urls))
    assert len(msg.media) == 100


def test_from_form_national_from_with_fromcountry_us() -> None:
    msg = Inbound.from_form(sms_form(From="(415) 555-0100", FromCountry="US"))
    assert msg.from_ == "+14155550100"


def test_from_form_number_without_plus_read_in_fromcountry() -> None:
    msg = Inbound.from_form(sms_form(From="447911123456", FromCountry="GB"))
    assert msg.from_ == "+447911123456"
    msg = Inbound.from_form(sms_form(From="07911 123456", FromCountry="gb"))
    assert msg.from_ == "+447911123456"


def test_from_form_to_read_in_tocountry() -> None:
    msg = Inbound.from_form(sms_form(To="020 7946 0958", ToCountry="GB"))
    assert msg.to == "+442079460958"


def test_from_form_region_is_the_fallback_without_country() -> None:
    form = sms_form(From="07911 123456", FromCountry=None)
    assert Inbound.from_form(form, region="GB").from_ == "+447911123456"
    form = sms_form(From="07911 123456", FromCountry="United Kingdom")
    assert Inbound.from_form(form, region="GB").from_ == "+447911123456"
    # An unknown two-letter code falls back to the region as well.
    form = sms_form(From="07911 123456", FromCountry="ZZ")
    assert Inbound.from_form(form, region="GB").from_ == "+447911123456"


def test_from_form_default_region_is_us() -> None:
    msg = Inbound.from_form(sms_form(From="415-555-0100", FromCountry=None))
    assert msg.from_ == "+14155550100"


def test_from_form_plus_number_ignores_fromcountry() -> None:
    msg = Inbound.from_form(sms_form(From="+447911123456", FromCountry="US"))
    assert msg.from_ == "+447911123456"
    msg = Inbound.from_form(sms_form(From="+447911123456", FromCountry="ZZ"))
    assert msg.from_ == "+447911123456"


def test_from_form_whatsapp() -> None:
    msg = Inbound.from_form(
        sms_form(
            From="whatsapp:+447911123456",
            To="whatsapp:+14155238886",
            FromCountry=None,
            ToCountry=None,
            NumSegments="1",
        )
    )
    assert msg.from_ == "whatsapp:+447911123456"
    assert msg.to == "whatsapp:+14155238886"


def test_from_form_short_code_and_alphanumeric_senders() -> None:
    assert Inbound.from_form(sms_form(From="89898")).from_ == "89898"
    assert Inbound.from_form(sms_form(From="TEXTWIRE")).from_ == "TEXTWIRE"
    assert Inbound.from_form(sms_form(To="12345")).to == "12345"


# ------------------------------------------------------------------ malformed forms


def assert_malformed(form: dict[str, str], match: str) -> MalformedWebhook:
    with pytest.raises(MalformedWebhook, match=match) as info:
        Inbound.from_form(form)
    message = str(info.value)
    # never the body or a full phone number
    assert form.get("Body", "") == "" or form["Body"] not in message
    for key in ("From", "To"):
        if len(form.get(key, "")) > 5:
            assert form[key] not in message
    return info.value


def test_malformed_webhook_is_a_webhook_error() -> None:
    error = assert_malformed(sms_form(MessageSid=None, SmsSid=None), "MessageSid")
    assert isinstance(error, WebhookError)


@pytest.mark.parametrize(
    "changes",
    [
        {"MessageSid": None, "SmsSid": None},
        {"MessageSid": "", "SmsSid": None},
        {"MessageSid": "", "SmsSid": ""},
    ],
)
def test_missing_message_sid(changes: dict[str, str | None]) -> None:
    assert_malformed(sms_form(**changes), "no MessageSid")


@pytest.mark.parametrize(
    "sid",
    [
        "SM123",
        "SM" + "0" * 31,
        "SM" + "0" * 33,
        "sm" + "0" * 32,
        "S1" + "0" * 32,
        "SM" + "g" * 32,
        " SM" + "0" * 31,
        "SM" + "0" * 31 + "\n",
        "SM-" + "0" * 31,
    ],
)
def test_message_sid_must_look_like_a_twilio_sid(sid: str) -> None:
    assert_malformed(sms_form(MessageSid=sid), "not a Twilio SID")


def test_bad_smssid_fallback_is_checked_too() -> None:
    assert_malformed(sms_form(MessageSid=None, SmsSid="12345"), "not a Twilio SID")


@pytest.mark.parametrize("value", [None, "", "  "])
def test_missing_account_sid(value: str | None) -> None:
    assert_malformed(sms_form(AccountSid=value), "AccountSid")


@pytest.mark.parametrize("key", ["From", "To"])
@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_from_or_to(key: str, value: str | None) -> None:
    assert_malformed(sms_form(**{key: value}), f"no {key}")


@pytest.mark.parametrize("key", ["From", "To"])
@pytest.mark.parametrize(
    "value",
    ["+1 415 555 01", "+999 1234 5678", "+1415555010012345", "(415) 555-01?0"],
)
def test_unreadable_number(key: str, value: str) -> None:
    error = assert_malformed(sms_form(**{key: value}), f"webhook {key} is not")
    assert isinstance(error.__cause__, InvalidPhoneNumber)
    assert "415 555" not in str(error)


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "", " ", "2x", "٣", "+1"])
def test_num_media_not_a_non_negative_integer(value: str) -> None:
    assert_malformed(twilio_form(NumMedia=value), "NumMedia must be")


def test_num_media_over_100() -> None:
    urls = {f"MediaUrl{i}": f"{MEDIA_BASE}/m/{i}" for i in range(101)}
    assert_malformed(sms_form(NumMedia="101", **urls), "NumMedia is 101")


def test_declared_media_url_missing() -> None:
    error = assert_malformed(twilio_form(MediaUrl1=None), "MediaUrl1 is missing")
    assert "NumMedia is 2" in str(error)
    assert_malformed(twilio_form(MediaUrl0=""), "MediaUrl0 is missing")
    assert_malformed(twilio_form(NumMedia="3"), "MediaUrl2 is missing")


@pytest.mark.parametrize("value", ["0", "-1", "x", "", "1.0", "one"])
def test_num_segments_not_a_positive_integer(value: str) -> None:
    assert_malformed(sms_form(NumSegments=value), "NumSegments must be")


def test_malformed_values_are_shown_only_when_short() -> None:
    error = assert_malformed(twilio_form(NumMedia="-1"), "NumMedia")
    assert "'-1'" in str(error)
    error = assert_malformed(sms_form(NumMedia="4155550100"), "NumMedia")
    assert "4155550100" not in str(error)
    assert "10-character value" in str(error)


def test_malformed_messages_never_echo_the_body() -> None:
    secret = "my password is hunter2"
    for changes in (
        {"NumMedia": secret},
        {"NumSegments": secret},
        {"MessageSid": secret},
    ):
        with pytest.raises(MalformedWebhook) as info:
            Inbound.from_form(sms_form(Body=secret, **changes))
        assert "password" not in str(info.value)


# --------------------------------------------------------------------------- core


def test_module_exports() -> None:
    assert sorted(textwire.messages.__all__) == sorted(
        [
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
    )
    for name in textwire.messages.__all__:
        assert hasattr(textwire.messages, name)


def test_importing_messages_loads_no_web_twilio_or_sql() -> None:
    src = Path(textwire.messages.__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(src), *filter(None, [env.get("PYTHONPATH")])]
    )
    code = (
        "import sys, textwire.messages\n"
        "roots = {name.partition('.')[0] for name in sys.modules}\n"
        "print(sorted(roots & {'flask', 'twilio', 'sqlalchemy'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

"""The emulator's own Twilio rules, and that the emulator owes nothing to textwire.

The emulator is a test double for Twilio: it must check the bot against what
Twilio documents, never against the bot's own number, segment or opt-out code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textwire.messages import segment_info
from textwire.sandbox import rules

SRC = Path(__file__).resolve().parents[2] / "src"

EMULATOR_MODULES = [
    "textwire.sandbox.rules",
    "textwire.sandbox.state",
    "textwire.sandbox.carrier",
    "textwire.sandbox.api",
    "textwire.sandbox.api.context",
    "textwire.sandbox.api.errors",
    "textwire.sandbox.api.faults",
    "textwire.sandbox.api.media",
    "textwire.sandbox.api.messages",
    "textwire.sandbox.api.numbers",
    "textwire.sandbox.api.paging",
    "textwire.sandbox.page",
]

# Run in a fresh interpreter. ``textwire/__init__.py`` re-exports the bot API
# for bot authors (and so imports the core); a bare package object stands in
# for it, so that only what the emulator's modules import themselves is loaded.
_PROBE = """
import importlib, json, sys, types
package = types.ModuleType("textwire")
package.__path__ = [sys.argv[1] + "/textwire"]
sys.modules["textwire"] = package
for name in json.loads(sys.argv[2]):
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("textwire"))))
"""


def test_the_emulator_imports_nothing_from_textwires_core() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(SRC), json.dumps(EMULATOR_MODULES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert set(EMULATOR_MODULES) <= set(loaded)
    outside = [
        name
        for name in loaded
        if name != "textwire" and not name.startswith("textwire.sandbox")
    ]
    assert outside == [], f"the emulator imports textwire's core: {outside}"
    # The sandbox app, which assembles the bot, is not part of the emulator.
    assert "textwire.sandbox.app" not in loaded


def test_the_probe_sees_an_import_of_the_core() -> None:
    # The same probe on the sandbox app, which imports the bot, must notice it.
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(SRC), json.dumps(["textwire.sandbox.app"])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    assert {"textwire.bot", "textwire.messages", "textwire.phone"} <= loaded


# -- numbers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+14155550100", "US", "+14155550100"),
        ("(415) 555-0100", "US", "+14155550100"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("+1 999 555 0100", "US", None),  # no such area code
        ("12", "US", None),
        ("call me", "US", None),
        ("", "US", None),
        ("whatsapp:+14155550100", "US", "whatsapp:+14155550100"),
    ],
)
def test_read_number(raw: str, region: str, expected: str | None) -> None:
    assert rules.read_number(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+14155550100", "+14155550100"),
        ("89898", "89898"),
        ("MyShop", "MyShop"),
        ("My Shop 24", "My Shop 24"),
        ("TwelveLetters", None),  # 13 > 11 characters
        ("+1 999 555 0100", None),  # no such area code
        ("+++", None),
    ],
)
def test_read_sender(raw: str, expected: str | None) -> None:
    assert rules.read_sender(raw) == expected


@pytest.mark.parametrize(
    ("number", "region"),
    [
        ("+14155550100", "US"),
        ("+16135550123", "CA"),
        ("+17875550100", "PR"),  # a +1 number outside the US and Canada
        ("+447400123456", "GB"),
        ("+4915123456789", "DE"),
        ("+999", None),
    ],
)
def test_region_of(number: str, region: str | None) -> None:
    assert rules.region_of(number) == region


def test_mms_reaches_the_us_and_canada_only() -> None:
    assert rules.mms_reaches("+14155550100")
    assert rules.mms_reaches("+16135550123")
    assert not rules.mms_reaches("+17875550100")
    assert not rules.mms_reaches("+447400123456")


# -- limits, URLs, keywords ---------------------------------------------------------


def test_body_length_is_utf16_units() -> None:
    assert rules.utf16_length("a\N{GRINNING FACE}") == 3
    assert rules.utf16_length("é") == 1


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://example.com/a.png", True),
        ("http://example.com:8080/a.png?x=1", True),
        ("ftp://example.com/a.png", False),
        ("/media/a.png", False),
        ("https://", False),
        ("https://example.com/a b.png", False),
        ("https://example.com:port/a.png", False),
    ],
)
def test_media_urls(url: str, ok: bool) -> None:
    assert rules.is_http_url(url) is ok


def test_status_callbacks() -> None:
    assert rules.valid_status_callback("https://a.example/cb")
    assert not rules.valid_status_callback("https://my_host.example/cb")
    assert not rules.valid_status_callback("https://a.example/" + "x" * 4000)


@pytest.mark.parametrize(
    ("body", "keyword"),
    [
        ("STOP", "stop"),
        (" stop ", "stop"),
        ("Cancel", "stop"),
        ("OPTOUT", "stop"),
        ("REVOKE", "stop"),
        ("STOP please", None),
        ("unstop", "start"),
        ("YES", "start"),
        ("info", "help"),
        ("hello", None),
    ],
)
def test_opt_keywords(body: str, keyword: str | None) -> None:
    assert rules.opt_keyword(body) == keyword


def test_sids() -> None:
    sid = rules.new_sid("MG")
    assert len(sid) == 34 and rules.is_service_sid(sid)
    assert not rules.is_service_sid("MG123")
    assert not rules.is_service_sid("SM" + "0" * 32)


def test_every_error_title_has_a_docs_link() -> None:
    assert rules.error_title(21610) == "Attempt to send to unsubscribed recipient"
    assert rules.error_title(99999) == "Error 99999"
    assert rules.more_info_url(21211) == "https://www.twilio.com/docs/errors/21211"


# -- segments: two implementations, one written for the bot, one from the docs -------


THUMB = "\N{THUMBS UP SIGN}\N{EMOJI MODIFIER FITZPATRICK TYPE-4}"
ATOMS = ["a", "a" * 40, "€", "\r\n", "ç", "\N{GRINNING FACE}", THUMB, "e\u0301"]


@pytest.mark.parametrize(
    ("body", "encoding", "characters", "count", "per_segment"),
    [
        ("", "GSM-7", 0, 1, 160),
        ("a" * 160, "GSM-7", 160, 1, 160),
        ("a" * 161, "GSM-7", 161, 2, 153),
        ("€" * 81, "GSM-7", 162, 2, 153),
        ("ç" * 70, "UCS-2", 70, 1, 70),
        ("a" * 65 + THUMB + "a" * 65, "UCS-2", 134, 3, 67),
        ("x" * 64 + "a" + "\u0301" * 70, "UCS-2", 135, 3, 67),
    ],
)
def test_segments(
    body: str, encoding: str, characters: int, count: int, per_segment: int
) -> None:
    info = rules.segments(body)
    assert (info.encoding, info.characters, info.count, info.per_segment) == (
        encoding,
        characters,
        count,
        per_segment,
    )


@settings(database=None, max_examples=300, deadline=None)
@given(
    st.one_of(
        st.lists(st.sampled_from(ATOMS), max_size=50).map("".join),
        st.text(max_size=300),
    )
)
def test_the_emulator_and_the_bot_count_segments_alike(body: str) -> None:
    ours = rules.segments(body)
    bots = segment_info(body)
    assert (ours.encoding, ours.characters, ours.count) == (
        bots.encoding,
        bots.characters,
        bots.segments,
    )
    assert ours.per_segment == bots.per_segment
    assert ours.non_gsm == bots.unicode_chars

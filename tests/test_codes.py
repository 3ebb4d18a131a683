"""The Twilio error-code catalogue."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from textwire.codes import CODES, TwilioCode, describe, more_info_url

REQUIRED = {
    20003, 20404, 20429, 21211, 21212, 21214, 21408, 21601, 21602, 21603, 21604,
    21606, 21608, 21610, 21611, 21612, 21614, 21617, 21619, 21620, 21621, 21623,
    21635, 21659, 30001, 30002, 30003, 30004, 30005, 30006, 30007, 30008, 30011,
    30017, 30019, 30022, 30023, 30032, 30034, 30035, 11200, 57012,
}  # fmt: skip


def test_required_codes_are_there() -> None:
    assert REQUIRED - CODES.keys() == set()


@pytest.mark.parametrize("code", sorted(CODES))
def test_entries_are_consistent(code: int) -> None:
    entry = CODES[code]
    assert isinstance(entry, TwilioCode)
    assert entry.code == code
    assert entry.title.strip() == entry.title and entry.title
    assert entry.action.strip() == entry.action and entry.action.endswith(".")


def test_flags() -> None:
    assert CODES[21610].opt_out
    assert [code for code, entry in CODES.items() if entry.opt_out] == [21610]
    assert CODES[20429].retryable
    assert not CODES[21211].retryable
    assert not CODES[21610].retryable


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        CODES[21610].opt_out = False  # type: ignore[misc]


def test_describe_known() -> None:
    text = describe(21610)
    assert text.startswith("21610 Attempt to send to unsubscribed recipient — ")
    assert "START" in text
    assert "TWILIO_ACCOUNT_SID" in describe(20003)
    assert "TWILIO_AUTH_TOKEN" in describe(20003)


def test_describe_unknown_and_none() -> None:
    assert describe(99999) == (
        "unknown Twilio error 99999 — see https://www.twilio.com/docs/errors/99999"
    )
    assert "no Twilio error code" in describe(None)


def test_more_info_url() -> None:
    assert more_info_url(21211) == "https://www.twilio.com/docs/errors/21211"


@given(st.integers(min_value=0, max_value=10**6))
def test_describe_never_raises(code: int) -> None:
    text = describe(code)
    assert text.startswith(str(code) + " ") or text.startswith("unknown")

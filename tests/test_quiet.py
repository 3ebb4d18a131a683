"""Quiet hours: the window in each zone of a number's prefix, stepped by the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textwire.config import Settings
from textwire.errors import ConfigError
from textwire.quiet import QuietHours, check_zone, zones_for_number

QUIET = QuietHours.parse("21:00-09:00")
LA = ("America/Los_Angeles",)


def la(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=ZoneInfo(LA[0]))


@pytest.mark.parametrize(
    "text", ["", "21-09", "25:00-09:00", "21:00-09:61", "09:00-09:00", "nine-five"]
)
def test_bad_windows_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="quiet hours"):
        QuietHours.parse(text)


def test_the_setting_is_checked_and_normalized() -> None:
    assert Settings(quiet_hours=" 9:00 - 17:30 ").quiet_hours == "09:00-17:30"
    assert Settings(quiet_hours="off").quiet_hours is None
    with pytest.raises(ConfigError, match="TEXTWIRE_QUIET_HOURS"):
        Settings(quiet_hours="21:00")


def test_stepping_the_clock_through_one_night() -> None:
    # 20:59 is allowed; 21:00 to 08:59 wait for 09:00; 09:00 is allowed.
    assert QUIET.next_allowed(la(2, 20, 59), LA) == la(2, 20, 59)
    for at in (la(2, 21), la(2, 23, 30), la(3, 0, 0), la(3, 3), la(3, 8, 59)):
        assert QUIET.next_allowed(at, LA) == la(3, 9), at
        assert QUIET.is_quiet(at, LA)
    assert QUIET.next_allowed(la(3, 9), LA) == la(3, 9)
    assert not QUIET.is_quiet(la(3, 12), LA)


def test_a_window_within_the_day() -> None:
    lunch = QuietHours.parse("12:00-13:00")
    assert lunch.next_allowed(la(2, 12, 30), LA) == la(2, 13)
    assert lunch.next_allowed(la(2, 23), LA) == la(2, 23)


def test_daylight_saving_night_in_the_zone() -> None:
    # The night of 8 March 2026 has 23 hours in Los Angeles: 09:00 is 16:00 UTC.
    at = datetime(2026, 3, 8, 23, 0, tzinfo=ZoneInfo(LA[0]))
    assert QUIET.next_allowed(at, LA).astimezone(UTC) == datetime(
        2026, 3, 9, 16, 0, tzinfo=UTC
    )


def test_a_prefix_of_several_zones_gets_the_latest_morning_and_earliest_evening() -> (
    None
):
    # +61 4 (an Australian mobile) spans the Cocos Islands (UTC+6:30) to Lord
    # Howe (UTC+11 in December): allowed from 09:00 on Cocos (02:30 UTC) to
    # 21:00 on Lord Howe (10:00 UTC).
    zones = zones_for_number("+61412345678")
    assert "Indian/Cocos" in zones and "Australia/Lord_Howe" in zones
    morning = QUIET.next_allowed(datetime(2026, 12, 2, 0, 0, tzinfo=UTC), zones)
    assert morning == datetime(2026, 12, 2, 2, 30, tzinfo=UTC)
    evening = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)  # 21:00 on Lord Howe
    assert QUIET.next_allowed(evening - timedelta(minutes=1), zones) < evening
    assert QUIET.next_allowed(evening, zones) == datetime(
        2026, 12, 3, 2, 30, tzinfo=UTC
    )


def test_zones_too_far_apart_drop_the_outliers() -> None:
    # +1 800 spans Guam (UTC+10) to Pago Pago (UTC-11): no common daytime.
    # The far zones are dropped until one exists; the answer is then allowed in
    # the mainland zones and never a night in New York.
    zones = zones_for_number("+18005550100")
    assert "Pacific/Guam" in zones and "Pacific/Pago_Pago" in zones
    at = QUIET.next_allowed(datetime(2026, 12, 2, 3, 0, tzinfo=UTC), zones)
    for name in ("America/New_York", "America/Chicago", "America/Los_Angeles"):
        assert 9 <= at.astimezone(ZoneInfo(name)).hour < 21, name


@settings(max_examples=200, deadline=None)
@given(
    minutes=st.integers(0, 60 * 24 * 30),
    number=st.sampled_from(
        ["+14155550100", "+12125550100", "+447400123456", "+61412345678"]
    ),
    window=st.sampled_from(["21:00-09:00", "20:30-08:00", "12:00-13:00"]),
)
def test_the_answer_is_allowed_everywhere_and_never_early(
    minutes: int, number: str, window: str
) -> None:
    quiet = QuietHours.parse(window)
    zones = zones_for_number(number)
    at = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    allowed = quiet.next_allowed(at, zones)
    assert at <= allowed <= at + timedelta(days=1)
    for name in zones:
        local = allowed.astimezone(ZoneInfo(name)).time()
        if quiet.start > quiet.end:
            assert quiet.end <= local < quiet.start, (name, local)
        else:
            assert not quiet.start <= local < quiet.end, (name, local)
    # And nothing earlier was allowed: one minute before, it was still quiet.
    if allowed > at:
        assert quiet.is_quiet(allowed - timedelta(minutes=1), zones)


def test_zones_for_numbers_and_names() -> None:
    assert zones_for_number("+14155550100") == ("America/Los_Angeles",)
    assert zones_for_number("+12125550100") == ("America/New_York",)
    assert zones_for_number("not a number") == ("UTC",)
    assert check_zone(" Europe/Berlin ") == "Europe/Berlin"
    with pytest.raises(ValueError, match="unknown time zone"):
        check_zone("Mars/Olympus_Mons")

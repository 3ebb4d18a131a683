"""Send times: ISO 8601, relative offsets, and local times in the recipient's zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from textwire.errors import InvalidSendTime
from textwire.quiet import zones_for_number
from textwire.when import SendTime, check_send_time, parse_when

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+2h", NOW + timedelta(hours=2)),
        ("+30m", NOW + timedelta(minutes=30)),
        ("in 2 days", NOW + timedelta(days=2)),
        ("2026-12-24T09:00:00+01:00", datetime(2026, 12, 24, 8, 0, tzinfo=UTC)),
        ("2026-12-24T09:00:00Z", datetime(2026, 12, 24, 9, 0, tzinfo=UTC)),
    ],
)
def test_instants_are_the_same_in_every_zone(text: str, expected: datetime) -> None:
    when = SendTime(text, NOW)
    assert not when.local
    for zones in (("UTC",), ("Asia/Tokyo",), ("America/Los_Angeles",)):
        assert when.for_zones(zones) == expected


def test_a_local_time_is_read_in_the_recipients_zone() -> None:
    when = SendTime("tomorrow 09:00", NOW)
    assert when.local
    sf = when.for_zones(zones_for_number("+14155550199"))
    london = when.for_zones(zones_for_number("+447400123456"))
    assert sf == datetime(2026, 12, 3, 17, 0, tzinfo=UTC)  # 09:00 PST
    assert london == datetime(2026, 12, 3, 9, 0, tzinfo=UTC)  # 09:00 GMT


def test_a_local_time_over_several_zones_is_the_latest() -> None:
    # Never before 09:00 anywhere the number may be: of the zones of +61 4
    # (Cocos Islands to Lord Howe), the Cocos Islands' 09:00 comes last.
    at = parse_when("tomorrow 09:00", now=NOW, zones=zones_for_number("+61412345678"))
    assert at == datetime(2026, 12, 3, 2, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("yesterday", "in the past"),
        ("2020-01-01T09:00:00+00:00", "in the past"),
        ("+400d", "more than a year ahead"),
        ("2028-01-01T09:00:00+00:00", "more than a year ahead"),
        ("whenever you like", "cannot read"),
        ("", "cannot read"),
    ],
)
def test_bad_send_times(text: str, message: str) -> None:
    with pytest.raises(InvalidSendTime, match=message):
        parse_when(text, now=NOW)


def test_check_is_decided_before_any_zone_is_known() -> None:
    with pytest.raises(InvalidSendTime, match="in the past"):
        SendTime("yesterday 09:00", NOW).check()
    SendTime("today 23:00", NOW).check()  # still ahead somewhere


def test_aware_datetimes() -> None:
    assert check_send_time(NOW + timedelta(hours=1), NOW) == NOW + timedelta(hours=1)
    # A minute's slack for the time it took to type: sent at once.
    assert check_send_time(NOW - timedelta(seconds=30), NOW) == NOW
    with pytest.raises(InvalidSendTime, match="no time zone"):
        check_send_time(datetime(2026, 12, 3, 9, 0), NOW)

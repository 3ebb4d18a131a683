"""Quiet hours: when a scheduled or bulk message may reach a phone.

A window such as ``21:00-09:00`` is the quiet part of each day, in the
recipient's local time. Replies to a contact who just texted are never held;
scheduled messages and broadcast rows whose local time falls inside it wait
for it to end. The recipient's time zone comes from the number itself
(``phonenumbers`` knows the zones of each prefix), or from a broadcast's
``timezone`` column.

A prefix may span several zones (``+1 800`` covers Guam to American Samoa,
a Russian mobile prefix Kaliningrad to Kamchatka). Then a message may go only
when it is allowed in every one of them: from the latest local morning to the
earliest local evening. When the zones are too far apart for any common
window, the ones farthest from the middle offset are dropped until one
exists. Plain Python on ``zoneinfo``::

    quiet = QuietHours.parse("21:00-09:00")
    quiet.next_allowed(now, zones_for_number("+14155550100"))
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_zones

__all__ = ["QuietHours", "check_zone", "zones_for_number"]

logger = logging.getLogger("textwire.quiet")

_WINDOW_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
# How far ahead a common allowed window is looked for (two days covers any
# window of at least a minute in zones up to 26 hours apart).
_HORIZON_DAYS = 3
_UNKNOWN = "Etc/Unknown"

Interval = tuple[datetime, datetime]


@dataclasses.dataclass(frozen=True, slots=True)
class QuietHours:
    """The quiet part of every local day, from ``start`` to ``end``.

    ``start`` after ``end`` (``21:00-09:00``) spans midnight; ``start``
    before ``end`` (``13:00-14:00``) lies within one day.

    Example:
        >>> quiet = QuietHours.parse("21:00-09:00")
        >>> str(quiet)
        '21:00-09:00'
        >>> at = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)        # 19:00 in SF
        >>> quiet.next_allowed(at, ("America/Los_Angeles",)) == at
        True
        >>> quiet.next_allowed(at, ("America/New_York",)).isoformat()
        '2026-12-02T14:00:00+00:00'
    """

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """Read ``HH:MM-HH:MM`` (24-hour clock).

        Raises:
            ValueError: not that form, an impossible time, or start == end.
        """
        found = _WINDOW_RE.match(text or "")
        if found is None:
            raise ValueError(
                f"quiet hours {text!r} are not HH:MM-HH:MM (e.g. 21:00-09:00)"
            )
        h1, m1, h2, m2 = (int(part) for part in found.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise ValueError(f"quiet hours {text!r}: hours 0-23, minutes 0-59")
        start, end = time(h1, m1), time(h2, m2)
        if start == end:
            raise ValueError(f"quiet hours {text!r} start and end at the same time")
        return cls(start, end)

    @classmethod
    def parse_optional(cls, text: str | None) -> QuietHours | None:
        """``None`` for ``None``, ``""``, ``off`` or ``none``; else :meth:`parse`."""
        if text is None or text.strip().lower() in ("", "off", "none"):
            return None
        return cls.parse(text)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def is_quiet(self, at: datetime, zones: Sequence[str]) -> bool:
        """Whether ``at`` falls in the quiet hours of any of ``zones``."""
        return self.next_allowed(at, zones) > at

    def next_allowed(self, at: datetime, zones: Sequence[str]) -> datetime:
        """The first moment from ``at`` on that is outside the quiet hours in
        every one of ``zones`` (``at`` itself when it already is).

        Args:
            at: an aware datetime.
            zones: IANA zone names (:func:`zones_for_number`); empty means UTC.
        """
        key = tuple(sorted(set(zones))) or ("UTC",)
        day = at.astimezone(UTC).date()
        for start, end in _common_allowed(str(self), key, day):
            if end > at:
                return max(start, at)
        # Unreachable for windows of a minute or more; never hold for ever.
        logger.warning("no time outside quiet hours %s found for %s", self, key)
        return at


@functools.lru_cache(maxsize=4096)
def _common_allowed(
    window: str, zones: tuple[str, ...], day: date
) -> tuple[Interval, ...]:
    """The UTC intervals, from ``day`` on, allowed in every zone of ``zones``;
    outlying zones dropped when they leave none (see the module docstring)."""
    quiet = QuietHours.parse(window)
    kept = sorted(zones, key=lambda name: _offset(name, day))
    while True:
        common = _allowed_in(quiet, kept[0], day)
        for name in kept[1:]:
            common = _intersect(common, _allowed_in(quiet, name, day))
        if common or len(kept) == 1:
            return tuple(common)
        # Drop whichever end of the offset range lies farther from the middle.
        middle = _offset(kept[len(kept) // 2], day)
        low, high = _offset(kept[0], day), _offset(kept[-1], day)
        kept = kept[1:] if middle - low >= high - middle else kept[:-1]


def _offset(name: str, day: date) -> float:
    noon = datetime.combine(day, time(12), tzinfo=UTC).astimezone(ZoneInfo(name))
    offset = noon.utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


def _allowed_in(quiet: QuietHours, name: str, day: date) -> list[Interval]:
    """The allowed (not quiet) intervals in zone ``name``, as UTC, around
    ``day`` and for the horizon after it."""
    zone = ZoneInfo(name)
    intervals: list[Interval] = []
    for delta in range(-1, _HORIZON_DAYS + 1):
        local = day + timedelta(days=delta)
        opens = datetime.combine(local, quiet.end, tzinfo=zone)
        closes_day = local if quiet.start > quiet.end else local + timedelta(days=1)
        closes = datetime.combine(closes_day, quiet.start, tzinfo=zone)
        opens_utc, closes_utc = opens.astimezone(UTC), closes.astimezone(UTC)
        if closes_utc > opens_utc:
            intervals.append((opens_utc, closes_utc))
    return intervals


def _intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """The intersection of two sorted lists of disjoint intervals."""
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def check_zone(name: str) -> str:
    """``name`` if it is an IANA time zone this machine knows, else ValueError.

    Example:
        >>> check_zone("Europe/Berlin")
        'Europe/Berlin'
    """
    text = name.strip()
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)"
        ) from None
    return text


@functools.lru_cache(maxsize=65536)
def zones_for_number(number: str) -> tuple[str, ...]:
    """The time zones of an E.164 number's prefix (``phonenumbers``), sorted;
    ``("UTC",)`` when it knows none.

    Example:
        >>> zones_for_number("+14155550100")
        ('America/Los_Angeles',)
    """
    try:
        parsed = phonenumbers.parse(number.removeprefix("whatsapp:"), None)
    except phonenumbers.NumberParseException:
        return ("UTC",)
    zones = [z for z in phone_zones.time_zones_for_number(parsed) if z != _UNKNOWN]
    known = []
    for name in zones:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        known.append(name)
    return tuple(sorted(known)) or ("UTC",)

"""Send times as people write them: ``--at``, ``ctx.schedule(at=...)``.

Three forms, all read by ``dateparser`` (a well-kept parser of dates in
words; textwire writes none of its own):

* ISO 8601 with an offset: ``2026-12-24T09:00:00+01:00`` (one instant);
* a relative offset: ``+2h``, ``+30m``, ``in 2 days`` (one instant);
* a local time: ``tomorrow 09:00``, ``09:00``, ``next monday 10am``: read in
  the *recipient's* time zone, so a broadcast's ``tomorrow 09:00`` is nine
  in the morning on every phone. Where the number's prefix spans several
  zones, the latest of those instants, so it is never before nine anywhere.

A send time must lie ahead (a minute of slack for the time it took to type)
and at most a year ahead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from textwire.errors import InvalidSendTime

__all__ = ["MAX_AHEAD", "SendTime", "check_send_time", "parse_when"]

MAX_AHEAD = timedelta(days=366)
"""The furthest ahead a message may be scheduled."""

_SLACK = timedelta(minutes=1)
# Two zones 26 hours apart, without daylight saving time: a text naming a
# wall-clock time reads differently in them, an instant the same.
_PROBES = ("Etc/GMT+12", "Etc/GMT-14")


def check_send_time(
    at: datetime, now: datetime, *, text: str | None = None
) -> datetime:
    """``at`` (as UTC) if it is neither past nor more than a year ahead.

    Raises:
        InvalidSendTime: naive, in the past, or too far ahead.
    """
    shown = repr(text) if text is not None else at.isoformat()
    if at.tzinfo is None:
        raise InvalidSendTime(
            f"send time {shown} has no time zone: give an aware datetime"
        )
    if at < now - _SLACK:
        raise InvalidSendTime(
            f"send time {shown} is in the past ({at.astimezone(UTC):%Y-%m-%d %H:%M} "
            "UTC)"
        )
    if at > now + MAX_AHEAD:
        raise InvalidSendTime(
            f"send time {shown} is more than a year ahead "
            f"({at.astimezone(UTC):%Y-%m-%d} UTC)"
        )
    return max(at, now).astimezone(UTC)


def _parse_in(text: str, zone: str, now: datetime) -> datetime | None:
    import dateparser

    base = now.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    found = dateparser.parse(
        text,
        languages=["en"],
        settings={
            "TIMEZONE": zone,
            "TO_TIMEZONE": "UTC",
            "RETURN_AS_TIMEZONE_AWARE": True,
            "RELATIVE_BASE": base,
            "PREFER_DATES_FROM": "future",
        },
    )
    return found.astimezone(UTC) if found is not None else None


class SendTime:
    """A send time as written, resolved for each recipient's zones.

    Example:
        >>> now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
        >>> SendTime("+2h", now).for_zones(("Europe/Berlin",)).isoformat()
        '2026-12-02T14:00:00+00:00'
        >>> local = SendTime("tomorrow 09:00", now)
        >>> local.local
        True
        >>> local.for_zones(("Europe/Berlin",)).isoformat()
        '2026-12-03T08:00:00+00:00'

    Raises:
        InvalidSendTime: the text cannot be read.
    """

    def __init__(self, text: str, now: datetime) -> None:
        self.text = text.strip()
        self.now = now
        probes = [_parse_in(self.text, zone, now) for zone in _PROBES]
        if not self.text or any(p is None for p in probes):
            raise InvalidSendTime(
                f"cannot read the send time {text!r}: use ISO 8601 with an offset "
                "(2026-12-24T09:00:00+01:00), an offset (+2h, +30m) or a local "
                "time (tomorrow 09:00)"
            )
        # A wall-clock time reads differently in the two probe zones.
        self.local = probes[0] != probes[1]
        self._instant = probes[0]
        self._probes = probes
        # One parse per distinct set of zones: a broadcast has few of them.
        self._by_zones: dict[tuple[str, ...], datetime] = {}

    def check(self) -> None:
        """Raise ``InvalidSendTime`` when the time is past in every zone of
        the world, or over a year ahead in every one (before any row is read).
        """
        probes = [p for p in self._probes if p is not None]
        latest, earliest = max(probes), min(probes)
        if latest < self.now:  # past everywhere: check_send_time says so
            check_send_time(latest, self.now, text=self.text)
        if earliest > self.now:  # too far ahead everywhere: the same
            check_send_time(earliest, self.now, text=self.text)

    def for_zones(self, zones: Sequence[str]) -> datetime:
        """The UTC instant for a recipient in ``zones`` (checked: ahead, within
        a year): the latest across them for a local time."""
        key = tuple(zones) or ("UTC",)
        if key not in self._by_zones:
            self._by_zones[key] = check_send_time(
                self._resolve(key), self.now, text=self.text
            )
        return self._by_zones[key]

    def _resolve(self, zones: tuple[str, ...]) -> datetime:
        if not self.local:
            assert self._instant is not None
            return self._instant
        found = [_parse_in(self.text, zone, self.now) for zone in zones]
        return max(x for x in found if x is not None)


def parse_when(
    text: str, *, now: datetime | None = None, zones: Sequence[str] = ("UTC",)
) -> datetime:
    """The UTC instant ``text`` names for a recipient in ``zones``.

    Example:
        >>> now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
        >>> parse_when("+30m", now=now).isoformat()
        '2026-12-02T12:30:00+00:00'

    Raises:
        InvalidSendTime: unreadable, in the past, or more than a year ahead.
    """
    return SendTime(text, now or datetime.now(UTC)).for_zones(tuple(zones))

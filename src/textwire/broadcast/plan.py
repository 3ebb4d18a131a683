"""From CSV rows to the messages of a broadcast, and the preview of them.

:class:`Planner` turns each data row into one of: the messages for a
recipient, a rejected row (line and reason), a duplicate (the number came
earlier), or an opted-out contact. The preview and the import both run it
over the same file, so what is queued is exactly what was previewed; it holds
only the set of numbers seen, never the rows.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import cast

import phonenumbers

from textwire.errors import InvalidMessage, InvalidPhoneNumber, InvalidSendTime
from textwire.media import MMS_REGIONS, MmsPolicy, apply_mms_policy
from textwire.messages import Reply, segment_info
from textwire.phone import mask, normalize, region_of
from textwire.quiet import check_zone, zones_for_number
from textwire.ratelimit import send_cost
from textwire.when import SendTime

from .csvsource import CsvSource
from .template import MessageTemplate, RowError

__all__ = [
    "Duplicate",
    "OptedOut",
    "Part",
    "Planner",
    "Preview",
    "Recipient",
    "Reject",
    "Row",
]

SAMPLES = 2
SHOWN_REJECTS = 10


@dataclasses.dataclass(frozen=True, slots=True)
class Part:
    """One message of a recipient (two when links for a phone without MMS
    did not fit beside the text)."""

    body: str
    media: tuple[str, ...]
    segments: int
    encoding: str
    unicode_chars: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Recipient:
    """A row that becomes messages."""

    index: int
    line: int
    to: str
    parts: tuple[Part, ...]
    region: str | None
    time_zone: str | None
    send_at: datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class Reject:
    """A row that cannot be sent: its line and why."""

    index: int
    line: int
    reason: str
    row: Mapping[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class Duplicate:
    """A row whose number (after normalization) came earlier."""

    index: int
    line: int
    to: str


@dataclasses.dataclass(frozen=True, slots=True)
class OptedOut:
    """A row whose contact replied STOP: skipped."""

    index: int
    line: int
    to: str


Row = Recipient | Reject | Duplicate | OptedOut


class Planner:
    """Turns rows into recipients; one per broadcast pass over the file.

    Args:
        source: the CSV file.
        template: the message template.
        media: media URLs every message carries (checked already).
        region: the region of numbers without a country code (and without a
            ``country`` column).
        mms_fallback: the MMS policy (``link``, ``drop``, ``send``).
        opted_out: the numbers that replied STOP.
        send_time: when to send (``None``: now).
        regions: work out each recipient's region for the preview's counts
            (the import needs it only to decide MMS or SMS for pictures).
    """

    def __init__(
        self,
        source: CsvSource,
        template: MessageTemplate,
        *,
        media: Sequence[str],
        region: str,
        mms_fallback: str,
        opted_out: set[str],
        send_time: SendTime | None = None,
        regions: bool = True,
    ) -> None:
        self.regions = regions
        self.source = source
        self.template = template
        self.media = tuple(media)
        self.region = region
        self.policy = cast(MmsPolicy, mms_fallback)
        self.opted_out = opted_out
        self.send_time = send_time
        self.seen: set[str] = set()

    def rows(self) -> Iterator[Row]:
        """Every data row's fate, in file order."""
        for index, (line, row) in enumerate(self.source.rows()):
            yield self.plan(index, line, row)

    def plan(self, index: int, line: int, row: Mapping[str, str]) -> Row:
        try:
            recipient = self._recipient(index, line, row)
        except RowError as exc:
            return Reject(index, line, str(exc), row)
        if recipient.to in self.seen:
            return Duplicate(index, line, recipient.to)
        self.seen.add(recipient.to)
        if recipient.to in self.opted_out:
            return OptedOut(index, line, recipient.to)
        return recipient

    def _recipient(self, index: int, line: int, row: Mapping[str, str]) -> Recipient:
        region = self._region(row)
        raw = row.get(self.source.number_column, "")
        if not raw:
            raise RowError("no number")
        try:
            to = normalize(raw, region)
        except InvalidPhoneNumber as exc:
            raise RowError(f"invalid number {mask(raw)}: {exc.reason}") from None
        body = self.template.render(row)
        # region_of parses the number again (the costliest step of a row).
        where = region_of(to) if self.regions or self.media else None
        try:
            reply = Reply(body, self.media)
        except InvalidMessage as exc:
            raise RowError(str(exc)) from None
        # apply_mms_policy would look the region up again (a costly parse):
        # it is only needed for pictures to a phone without MMS.
        if not reply.media or self.policy == "send" or where in MMS_REGIONS:
            parts = [reply]
        else:
            parts = apply_mms_policy(to, reply, self.policy)
        if not parts:
            raise RowError("nothing to send (no text, and the media were dropped)")
        zone = self._zone(row)
        send_at = None
        if self.send_time is not None:
            try:
                send_at = self.send_time.for_zones(
                    (zone,) if zone else zones_for_number(to)
                )
            except InvalidSendTime as exc:
                raise RowError(str(exc)) from None
        return Recipient(
            index=index,
            line=line,
            to=to,
            parts=tuple(_part(p) for p in parts),
            region=where,
            time_zone=zone,
            send_at=send_at,
        )

    def _region(self, row: Mapping[str, str]) -> str:
        column = self.source.country_column
        value = row.get(column, "").strip().upper() if column else ""
        if not value:
            return self.region
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise RowError(f"unknown country {value!r} (a two-letter code: US, GB)")
        return value

    def _zone(self, row: Mapping[str, str]) -> str | None:
        column = self.source.timezone_column
        value = row.get(column, "").strip() if column else ""
        if not value:
            return None
        try:
            return check_zone(value)
        except ValueError as exc:
            raise RowError(str(exc)) from None


def _part(reply: Reply) -> Part:
    info = segment_info(reply.body)
    return Part(
        body=reply.body,
        media=reply.media,
        segments=info.segments,
        encoding=info.encoding,
        unicode_chars=info.unicode_chars,
    )


@dataclasses.dataclass
class Preview:
    """What a broadcast would send, counted before anything is queued.

    Attributes:
        rows: data rows read; ``valid`` of them become messages,
            ``invalid`` are rejected, ``duplicates`` repeat an earlier
            number, ``opted_out`` replied STOP.
        messages: outbox rows (a recipient may need two).
        encodings: messages per encoding (``GSM-7``, ``UCS-2``).
        segments: the segments of every message.
        ucs2_chars: the characters that forced UCS-2, with how many messages
            each appears in.
        by_country: per region, how many messages go as MMS and as SMS (the
            MMS policy applied).
        seconds: sending time at the sender's rate limit.
        samples: the first recipients, to show.
        rejects: the first rejected rows, to show (all go to the rejects file).
        first_at, last_at: the earliest and latest scheduled send time.
    """

    rows: int = 0
    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    opted_out: int = 0
    messages: int = 0
    encodings: Counter[str] = dataclasses.field(default_factory=Counter)
    segments: int = 0
    ucs2_chars: Counter[str] = dataclasses.field(default_factory=Counter)
    by_country: dict[str, Counter[str]] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    samples: list[Recipient] = dataclasses.field(default_factory=list)
    rejects: list[Reject] = dataclasses.field(default_factory=list)
    first_at: datetime | None = None
    last_at: datetime | None = None

    def add(self, row: Row, *, sender: str, mps: float | None) -> None:
        """Count one row's fate."""
        self.rows += 1
        if isinstance(row, Reject):
            self.invalid += 1
            if len(self.rejects) < SHOWN_REJECTS:
                self.rejects.append(row)
        elif isinstance(row, Duplicate):
            self.duplicates += 1
        elif isinstance(row, OptedOut):
            self.opted_out += 1
        else:
            self._add_recipient(row, sender, mps)

    def _add_recipient(self, row: Recipient, sender: str, mps: float | None) -> None:
        self.valid += 1
        if len(self.samples) < SAMPLES:
            self.samples.append(row)
        country = self.by_country.setdefault(row.region or "other", Counter())
        for part in row.parts:
            self.messages += 1
            self.encodings[part.encoding] += 1
            self.segments += part.segments
            self.ucs2_chars.update(part.unicode_chars)
            country["MMS" if part.media else "SMS"] += 1
            self.seconds += send_cost(sender, part.segments, mps)
        if row.send_at is not None:
            if self.first_at is None or row.send_at < self.first_at:
                self.first_at = row.send_at
            if self.last_at is None or row.send_at > self.last_at:
                self.last_at = row.send_at

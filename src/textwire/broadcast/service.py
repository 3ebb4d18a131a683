"""Preparing, previewing, importing and resuming a broadcast.

The command line (``textwire broadcast``) and the sandbox's phone page both
go through here::

    draft = prepare(settings, "members.csv", body="Hi {first_name}!")
    preview = draft.preview(store)                # counts; nothing queued
    broadcast_id = draft.create(store, preview)   # the rows, in batches

``import_rows`` is also what ``broadcast resume`` runs for a broadcast whose
import was interrupted: it reads the file again (which must be the same
bytes), skips the rows already committed and queues the rest.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from textwire.config import Settings
from textwire.errors import BroadcastError, ConfigError
from textwire.messages import Reply
from textwire.phone import normalize_sender
from textwire.quiet import QuietHours
from textwire.storage.outbox import NewMessage
from textwire.storage.schema import PRIORITY_BULK
from textwire.storage.sql import SqlStore
from textwire.when import SendTime

from .csvsource import CsvSource, file_sha256, open_source
from .plan import Planner, Preview, Recipient, Reject, Row
from .template import MessageTemplate, RowError

__all__ = [
    "IMPORT_BATCH",
    "Draft",
    "import_rows",
    "prepare",
    "rejects_path",
    "sender_of",
]

IMPORT_BATCH = 500
"""Rows committed per transaction while importing (and the most an
interrupted import has to redo)."""


def _after_batch(broadcast_id: int, imported_rows: int) -> None:
    """Called after each committed batch (tests stop an import here)."""


def rejects_path(path: Path) -> Path:
    """Where a file's invalid rows are written: ``list.csv`` → ``list.rejects.csv``."""
    return path.with_name(path.stem + ".rejects.csv")


def sender_of(settings: Settings) -> tuple[str | None, str | None]:
    """``(from, messaging_service_sid)`` a broadcast sends from.

    Raises:
        ConfigError: no sender is configured.
    """
    if settings.twilio_messaging_service_sid:
        return None, settings.twilio_messaging_service_sid
    if not settings.twilio_phone_number:
        raise ConfigError(
            "no sender: set TWILIO_PHONE_NUMBER or TWILIO_MESSAGING_SERVICE_SID"
        )
    return normalize_sender(settings.twilio_phone_number, settings.default_region), None


@dataclasses.dataclass
class Draft:
    """A broadcast checked and ready to preview: nothing is written yet."""

    settings: Settings
    source: CsvSource
    template: MessageTemplate
    media: tuple[str, ...]
    name: str
    sha256: str
    send_time: SendTime | None
    quiet_hours: str | None
    from_: str | None
    service: str | None
    now: datetime

    def planner(self, store: SqlStore) -> Planner:
        return Planner(
            self.source,
            self.template,
            media=self.media,
            region=self.settings.default_region,
            mms_fallback=self.settings.mms_fallback,
            opted_out=store.contacts.all_opted_out(),
            send_time=self.send_time,
        )

    def preview(self, store: SqlStore, *, write_rejects: bool = True) -> Preview:
        """Read the whole file once and count what would be sent; invalid
        rows go to the rejects file next to it."""
        preview = Preview()
        sender = self.from_ or self.service or "default"
        with _RejectsWriter(self.source, write_rejects) as rejects:
            for row in self.planner(store).rows():
                preview.add(row, sender=sender, mps=self.settings.rate_limit_mps)
                if isinstance(row, Reject):
                    rejects.write(row)
        return preview

    def create(
        self,
        store: SqlStore,
        preview: Preview,
        *,
        batch: int = IMPORT_BATCH,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Write the broadcast and queue its rows; its id.

        Raises:
            BroadcastError: one of this name was made from this file already.
        """
        broadcast_id = store.broadcasts.create(
            now=self.now,
            name=self.name,
            source_path=str(self.source.path.resolve()),
            source_sha256=self.sha256,
            body=self.template.text,
            media=list(self.media),
            send_at_text=self.send_time.text if self.send_time else None,
            quiet_hours=self.quiet_hours,
            number_column=self.source.number_column,
            region=self.settings.default_region,
            from_number=self.from_,
            messaging_service_sid=self.service,
            rows_read=preview.rows,
            valid=preview.valid,
            invalid=preview.invalid,
            duplicates=preview.duplicates,
            opted_out=preview.opted_out,
        )
        import_rows(store, broadcast_id, self.settings, batch=batch, progress=progress)
        return broadcast_id


def prepare(
    settings: Settings,
    path: Path | str,
    *,
    body: str,
    media: Sequence[str] = (),
    at: str | None = None,
    name: str | None = None,
    number_column: str | None = None,
    quiet_hours: str | None = None,
    now: datetime | None = None,
) -> Draft:
    """Check a broadcast before any row is read: the file's shape, the
    template, the media, the send time, the quiet hours and the sender.

    Args:
        quiet_hours: ``HH:MM-HH:MM``, ``off``, or ``None`` for the settings'.

    Raises:
        BroadcastError: the file or the template.
        InvalidMessage: a media URL.
        InvalidSendTime: ``at`` is unreadable, past, or over a year ahead.
        ConfigError: bad quiet hours, or no sender.
    """
    clock = now or datetime.now(UTC)
    source = open_source(path, number_column)
    if not body.strip() and not media:
        raise BroadcastError("nothing to send: give --body (and/or --media)")
    template = MessageTemplate(body)
    _check_fields(source, template)
    # The URLs, checked as a reply's are (absolute http(s), 10 at most).
    checked = Reply(" ", media).media if media else ()
    send_time = None
    if at is not None:
        send_time = SendTime(at, clock)
        send_time.check()
    try:
        quiet = (
            QuietHours.parse_optional(quiet_hours)
            if quiet_hours is not None
            else QuietHours.parse_optional(settings.quiet_hours)
        )
    except ValueError as exc:
        raise ConfigError(f"--quiet-hours: {exc}") from None
    from_, service = sender_of(settings)
    return Draft(
        settings=settings,
        source=source,
        template=template,
        media=checked,
        name=name or source.path.name,
        sha256=file_sha256(source.path),
        send_time=send_time,
        quiet_hours=str(quiet) if quiet else None,
        from_=from_,
        service=service,
        now=clock,
    )


def _check_fields(source: CsvSource, template: MessageTemplate) -> None:
    """A template field that no column holds fails every row: say so now."""
    full = dict.fromkeys(source.fields, "x")
    try:
        template.render(full)
    except RowError as exc:
        columns = ", ".join(h for h in source.headers if h)
        raise BroadcastError(
            f"{exc} in every row: {source.path.name} has no such column (its "
            f"columns: {columns})"
        ) from None


class _RejectsWriter:
    """The rejects CSV next to the input, opened at the first invalid row."""

    def __init__(self, source: CsvSource, enabled: bool) -> None:
        self.source = source
        self.enabled = enabled
        self.path = rejects_path(source.path)
        self._file: Any = None
        self._writer: Any = None

    def __enter__(self) -> _RejectsWriter:
        return self

    def write(self, row: Reject) -> None:
        if not self.enabled:
            return
        if self._writer is None:
            self._file = self.path.open("w", encoding="utf-8", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow(["line", "reason", *self.source.headers])
        cells = [row.row.get(name, "") for name in self.source.fields]
        self._writer.writerow([row.line, row.reason, *cells])

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()


def import_rows(
    store: SqlStore,
    broadcast_id: int,
    settings: Settings,
    *,
    batch: int = IMPORT_BATCH,
    progress: Callable[[int], None] | None = None,
    now: datetime | None = None,
) -> dict[str, int]:
    """Queue a broadcast's rows from its file, from where its import stopped,
    and start it sending; the final counts.

    Every row is planned again from the start (so duplicates are found the
    same way), but only rows past ``imported_rows`` are queued, each batch
    committed with the new ``imported_rows``.

    Raises:
        BroadcastError: the file is gone or changed since the broadcast was
            made, or the broadcast is not importing.
    """
    b = store.broadcasts.get(broadcast_id)
    if b["status"] != "importing":
        raise BroadcastError(
            f"broadcast #{broadcast_id} is {b['status']}, not importing"
        )
    path = Path(b["source_path"])
    if not path.is_file():
        raise BroadcastError(f"broadcast #{broadcast_id}: its file {path} is gone")
    if file_sha256(path) != b["source_sha256"]:
        raise BroadcastError(
            f"broadcast #{broadcast_id}: {path.name} changed since it was made; "
            "put the original back to resume, or cancel it"
        )
    planner = Planner(
        open_source(path, b["number_column"]),
        MessageTemplate(b["body"]),
        media=tuple(b["media"] or ()),
        region=b["region"],
        mms_fallback=settings.mms_fallback,
        opted_out=store.contacts.all_opted_out(),
        send_time=SendTime(b["send_at_text"], b["planned_at"])
        if b["send_at_text"]
        else None,
        regions=False,
    )
    importer = _Importer(store, b, batch, progress, now)
    for row in planner.rows():
        importer.add(row)
    importer.finish()
    return importer.counts


class _Importer:
    """Batches of a broadcast's messages, each committed with how far the
    import got and the counts so far."""

    def __init__(
        self,
        store: SqlStore,
        broadcast: Mapping[str, Any],
        batch: int,
        progress: Callable[[int], None] | None,
        now: datetime | None,
    ) -> None:
        self.store = store
        self.b = broadcast
        self.batch = max(1, batch)
        self.progress = progress
        self.now = now
        self.start = int(broadcast["imported_rows"])
        # What an earlier, interrupted import queued: never queued again.
        self.already = store.broadcasts.queued_numbers(broadcast["id"])
        self.pending: list[NewMessage] = []
        self.rows = 0
        self.counts = {
            "rows_read": 0,
            "valid": 0,
            "invalid": 0,
            "duplicates": 0,
            "opted_out": 0,
        }

    def add(self, row: Row) -> None:
        self.rows = row.index + 1
        self.counts["rows_read"] += 1
        kind = type(row).__name__
        key = {
            "Recipient": "valid",
            "Reject": "invalid",
            "Duplicate": "duplicates",
            "OptedOut": "opted_out",
        }[kind]
        self.counts[key] += 1
        if row.index < self.start:
            return
        if isinstance(row, Recipient) and row.to not in self.already:
            self.pending.extend(self._messages(row))
        if (row.index + 1 - self.start) % self.batch == 0:
            self._commit()

    def _messages(self, row: Recipient) -> list[NewMessage]:
        return [
            NewMessage(
                to=row.to,
                body=part.body,
                media=part.media,
                from_=self.b["from_number"],
                messaging_service_sid=self.b["messaging_service_sid"],
                send_at=row.send_at,
                priority=PRIORITY_BULK,
                broadcast_id=self.b["id"],
                quiet_hours=self.b["quiet_hours"],
                time_zone=row.time_zone,
            )
            for part in row.parts
        ]

    def _commit(self) -> None:
        ok = self.store.broadcasts.commit_batch(
            self.b["id"],
            self.pending,
            imported_rows=self.rows,
            counts=self.counts,
            now=self.now or datetime.now(UTC),
        )
        if not ok:
            raise BroadcastError(f"broadcast #{self.b['id']} was cancelled mid-import")
        self.pending = []
        if self.progress is not None:
            self.progress(self.rows)
        _after_batch(self.b["id"], self.rows)

    def finish(self) -> None:
        if self.rows > self.start or self.pending:
            self._commit()
        self.store.broadcasts.refresh_statistics()
        self.store.broadcasts.move(
            self.b["id"],
            "sending",
            only_from=("importing",),
            now=self.now or datetime.now(UTC),
        )

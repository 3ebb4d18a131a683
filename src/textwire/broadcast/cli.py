"""``textwire broadcast …`` and ``textwire scheduled …``.

Bad input (a file that is not CSV, no number column, a template that fails,
a send time in the past or over a year ahead, an unknown ID, resuming a
cancelled broadcast) is one line on stderr and exit code 2, with nothing
queued.
"""

from __future__ import annotations

import csv
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from textwire.errors import (
    BroadcastError,
    ConfigError,
    InvalidMessage,
    InvalidSendTime,
    StorageError,
)
from textwire.phone import mask

__all__ = ["broadcast", "describe_time", "scheduled"]

console = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

# Bad input: one line, exit 2.
BAD_INPUT = (BroadcastError, ConfigError, InvalidMessage, InvalidSendTime)
_POLL = 0.5  # seconds between progress readings


def _bad(message: str) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}", markup=True)
    sys.exit(2)


def describe_time(at: datetime, number: str | None = None) -> str:
    """``2026-12-03 17:00 UTC (09:00 America/Los_Angeles)`` for a recipient."""
    text = f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    if number is None:
        return text
    from zoneinfo import ZoneInfo

    from textwire.quiet import zones_for_number

    zones = zones_for_number(number)
    if len(zones) != 1 or zones[0] == "UTC":
        return text
    return f"{text} ({at.astimezone(ZoneInfo(zones[0])):%H:%M} {zones[0]})"


@contextmanager
def _runtime(*, send: bool) -> Iterator[Any]:
    """The runtime of a broadcast command: no bot runs here; a transport
    only when this process sends."""
    from textwire import Bot
    from textwire.cli import _settings, _transport
    from textwire.runtime import Runtime

    settings = _settings()
    transport = _transport(settings, dry_run=False) if send else None
    try:
        runtime = Runtime.from_settings(
            settings, bot=Bot("broadcast"), transport=transport, worker=False
        )
    except ConfigError as exc:
        _bad(str(exc))
    except StorageError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(1)
    try:
        yield runtime
    finally:
        runtime.stop()


def _broadcast(store: Any, broadcast_id: int) -> dict[str, Any]:
    try:
        found: dict[str, Any] = store.broadcasts.get(broadcast_id)
    except BroadcastError as exc:
        _bad(str(exc))
    return found


# -- broadcast -------------------------------------------------------------------


@click.group()
def broadcast() -> None:
    """Bulk sends from a CSV file: create, list, status, pause, resume, cancel,
    export."""


@broadcast.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--body", required=True, help="The template: Hi {first_name}!")
@click.option("--media", multiple=True, metavar="URL", help="An image URL (up to 10).")
@click.option(
    "--at",
    "when",
    metavar="WHEN",
    help="Send later: ISO 8601, +2h, or 'tomorrow 09:00' in each recipient's "
    "local time. A running worker sends it.",
)
@click.option("--name", help="Its name (default: the file's name).")
@click.option("--number-column", metavar="COLUMN", help="The column with numbers.")
@click.option(
    "--quiet-hours",
    metavar="HH:MM-HH:MM",
    help="Hold messages while the recipient's local time is inside this window "
    "('off' for none; default TEXTWIRE_QUIET_HOURS).",
)
@click.option("--yes", "-y", is_flag=True, help="Queue without asking.")
@click.option(
    "--queue-only",
    is_flag=True,
    help="Queue and return; a running `textwire run` or worker sends it.",
)
@click.option("--import-batch", default=500, hidden=True, type=click.IntRange(1))
def create(
    file: Path,
    body: str,
    media: tuple[str, ...],
    when: str | None,
    name: str | None,
    number_column: str | None,
    quiet_hours: str | None,
    yes: bool,
    queue_only: bool,
    import_batch: int,
) -> None:
    """Preview a broadcast from FILE, then queue it (and send it, unless
    --queue-only or --at)."""
    from textwire.broadcast.service import prepare
    from textwire.cli import _settings

    settings = _settings()
    try:
        draft = prepare(
            settings,
            file,
            body=body,
            media=media,
            at=when,
            name=name,
            number_column=number_column,
            quiet_hours=quiet_hours,
        )
    except BAD_INPUT as exc:
        _bad(str(exc))
    send = not queue_only and when is None
    if send and not settings.has_twilio_credentials:
        _bad(
            "sending needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or pass "
            "--queue-only for a running worker to send it)"
        )
    with _runtime(send=False) as runtime:
        store = runtime.store
        existing = store.broadcasts.find(draft.name, draft.sha256)
        if existing is not None:
            from textwire.storage.broadcasts import already_made

            _bad(str(already_made(existing)))
        try:
            preview = draft.preview(store)
        except BroadcastError as exc:
            _bad(str(exc))
        _show_preview(draft, preview)
        if preview.valid == 0:
            _bad(
                f"no row of {file.name} can be sent"
                + (f" (line {r.line}: {r.reason})" if (r := _first(preview)) else "")
            )
        if not yes:
            if not sys.stdin.isatty():
                out.print("preview only: nothing queued (pass --yes to queue it)")
                return
            if not click.confirm(f"Queue {preview.messages:,} messages?"):
                out.print("nothing queued")
                return
        broadcast_id = _create(draft, store, preview, import_batch)
    if send:
        _resume_sending(broadcast_id)


def _first(preview: Any) -> Any:
    return preview.rejects[0] if preview.rejects else None


def _create(draft: Any, store: Any, preview: Any, batch: int) -> int:
    try:
        with console.status("queueing…"):
            broadcast_id: int = draft.create(store, preview, batch=batch)
    except BroadcastError as exc:
        _bad(str(exc))
    b = store.broadcasts.get(broadcast_id)
    out.print(
        f"broadcast [bold]#{broadcast_id}[/] {b['name']!r}: {preview.messages:,} "
        f"messages queued"
    )
    if draft.send_time is not None and preview.first_at is not None:
        out.print(f"  sends from {describe_time(preview.first_at)}: a worker sends it")
    return broadcast_id


def _show_preview(draft: Any, preview: Any) -> None:
    from textwire.ratelimit import sender_kind

    src = draft.source
    delimiter = {",": "','", ";": "';'", "\t": "tab"}[src.delimiter]
    out.print(
        f"[bold]broadcast preview[/] {draft.name!r}: {src.path.name} "
        f"({delimiter} separated, numbers in column {src.number_column!r})"
    )
    rows = [
        ("rows read", preview.rows, ""),
        ("valid", preview.valid, f"{preview.messages:,} messages"),
        ("invalid", preview.invalid, _rejects_note(draft, preview)),
        ("duplicates", preview.duplicates, "sent once" if preview.duplicates else ""),
        ("opted out", preview.opted_out, "skipped" if preview.opted_out else ""),
    ]
    for label, value, note in rows:
        out.print(f"  {label:<13}{value:>10,}  {note}".rstrip())
    out.print(f"  {'encoding':<13}{_encodings(preview)}")
    out.print(f"  {'segments':<13}{preview.segments:>10,}")
    countries = " · ".join(
        f"{region} " + ", ".join(f"{n:,} {kind}" for kind, n in sorted(kinds.items()))
        for region, kinds in sorted(preview.by_country.items())
    )
    out.print(f"  {'by country':<13}{countries or '-'}  (MMS policy {_policy(draft)})")
    sender = draft.from_ or draft.service or "default"
    rate = draft.settings.rate_limit_mps
    kind = sender_kind(sender).replace("_", " ")
    pace = f"{rate:g} segments/s" if rate else f"the {kind} rate"
    out.print(
        f"  {'sending time':<13}about {_duration(preview.seconds)} at {pace} "
        f"({mask(sender)})"
    )
    if draft.send_time is not None and preview.first_at is not None:
        span = describe_time(preview.first_at)
        if preview.last_at and preview.last_at != preview.first_at:
            span += f" to {describe_time(preview.last_at)}"
        out.print(f"  {'send at':<13}{draft.send_time.text!r}: {span}")
    if draft.quiet_hours:
        out.print(f"  {'quiet hours':<13}{draft.quiet_hours} (each recipient's time)")
    for reject in preview.rejects:
        out.print(f"  [yellow]line {reject.line}[/]: {reject.reason}")
    if preview.invalid > len(preview.rejects):
        out.print(f"  … and {preview.invalid - len(preview.rejects):,} more invalid")
    for n, sample in enumerate(preview.samples, 1):
        out.print(f"  [dim]sample {n}[/] (line {sample.line}, {mask(sample.to)}):")
        for part in sample.parts:
            out.print("    " + part.body.replace("\n", "\n    "), markup=False)
            for url in part.media:
                out.print(f"    [media] {url}", markup=False)


def _rejects_note(draft: Any, preview: Any) -> str:
    if not preview.invalid:
        return ""
    from textwire.broadcast.service import rejects_path

    return f"listed in {rejects_path(draft.source.path).name}"


def _encodings(preview: Any) -> str:
    mix = " · ".join(f"{k} {v:,}" for k, v in sorted(preview.encodings.items()))
    if preview.ucs2_chars:
        chars = ", ".join(f"{c!r} ×{n:,}" for c, n in preview.ucs2_chars.most_common(8))
        mix += f" (UCS-2 because of {chars})"
    return mix or "-"


def _policy(draft: Any) -> str:
    return str(draft.settings.mms_fallback)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def _resume_sending(broadcast_id: int) -> None:
    """Send a broadcast's rows from this process until none is left to send
    now (a worker elsewhere may share the work)."""
    from textwire.worker import SendWorker

    with _runtime(send=True) as runtime:
        store = runtime.store
        worker = SendWorker(
            store, runtime.transport, settings=runtime.settings, broadcast=broadcast_id
        )
        worker.start()
        stop = threading.Event()
        try:
            progress = _watch(store, broadcast_id, stop)
        except KeyboardInterrupt:
            out.print(f"stopped: `textwire broadcast resume {broadcast_id}` goes on")
            return
        finally:
            worker.stop()
    _summary(broadcast_id, progress)


def _watch(store: Any, broadcast_id: int, stop: threading.Event) -> dict[str, int]:
    """A progress bar until the broadcast has nothing left to send now:
    done, paused or cancelled, or only rows waiting for later."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from textwire.broadcast.control import finished

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(f"broadcast #{broadcast_id}", total=None)
        while True:
            now = datetime.now(UTC)
            p: dict[str, int] = store.broadcasts.progress(broadcast_id, now)
            status = store.broadcasts.get(broadcast_id)["status"]
            bar.update(task, total=p["total"], completed=finished(p))
            in_flight = p["sending"] + p["unknown"]
            if p["open"] == 0 or (status in ("paused", "cancelled") and not in_flight):
                return p
            if p["held"] + p["scheduled"] >= p["open"] and not in_flight:
                return p
            stop.wait(_POLL)


def _summary(broadcast_id: int, p: dict[str, int]) -> None:
    out.print(
        f"broadcast #{broadcast_id}: {p['sent']:,} sent, {p['failed']:,} failed, "
        f"{p['cancelled']:,} cancelled, {p['open']:,} to send"
    )
    if p["held"]:
        out.print(f"  {p['held']:,} wait for quiet hours to end: a worker sends them")
    if p["scheduled"]:
        out.print(f"  {p['scheduled']:,} wait for their send time: a worker sends them")


@broadcast.command(name="list")
def list_() -> None:
    """Every broadcast, newest first."""
    with _runtime(send=False) as runtime:
        store = runtime.store
        table = Table("id", "name", "status", "created", "messages", "sent", "failed")
        now = datetime.now(UTC)
        for b in store.broadcasts.all():
            p = store.broadcasts.progress(b["id"], now)
            table.add_row(
                str(b["id"]),
                b["name"],
                b["status"],
                f"{b['created_at']:%Y-%m-%d %H:%M}",
                f"{p['total']:,}",
                f"{p['sent']:,}",
                f"{p['failed']:,}",
            )
        out.print(table if table.row_count else "no broadcasts yet")


@broadcast.command()
@click.argument("broadcast_id", type=int)
@click.option("--watch", is_flag=True, help="A live progress bar until it is done.")
def status(broadcast_id: int, watch: bool) -> None:
    """A broadcast's counts: sent, failed, waiting (quiet hours, send time)."""
    with _runtime(send=False) as runtime:
        store = runtime.store
        b = _broadcast(store, broadcast_id)
        if watch:
            with suppress(KeyboardInterrupt):
                _watch(store, broadcast_id, threading.Event())
            b = store.broadcasts.get(broadcast_id)
        p = store.broadcasts.progress(broadcast_id, datetime.now(UTC))
    out.print(f"broadcast [bold]#{b['id']}[/] {b['name']!r}: {b['status']}")
    out.print(
        f"  rows {b['rows_read']:,}: {b['valid']:,} valid, {b['invalid']:,} invalid, "
        f"{b['duplicates']:,} duplicates, {b['opted_out']:,} opted out"
    )
    lines = [
        ("messages", p["total"]),
        ("sent", p["sent"]),
        ("  delivered", p["delivered"]),
        ("  undelivered", p["undelivered"]),
        ("failed", p["failed"]),
        ("cancelled", p["cancelled"]),
        ("being sent", p["sending"] + p["unknown"]),
        ("queued", p["queued"]),
        ("  quiet hours", p["held"]),
        ("  scheduled", p["scheduled"]),
    ]
    for label, value in lines:
        out.print(f"  {label:<14}{value:>10,}")
    if b["status"] == "importing":
        out.print(
            f"  import stopped after {b['imported_rows']:,} rows: "
            f"`textwire broadcast resume {b['id']}`"
        )


@broadcast.command()
@click.argument("broadcast_id", type=int)
def pause(broadcast_id: int) -> None:
    """Stop claiming a broadcast's rows (those being sent finish)."""
    from textwire.broadcast import control

    with _runtime(send=False) as runtime:
        try:
            change = control.pause(runtime.store, broadcast_id, now=datetime.now(UTC))
        except BroadcastError as exc:
            _bad(str(exc))
    if change.changed:
        out.print(f"{change.message}: `textwire broadcast resume` goes on")
    else:
        out.print(change.message)


@broadcast.command()
@click.argument("broadcast_id", type=int)
@click.option(
    "--queue-only",
    is_flag=True,
    help="Only let it go on; a running `textwire run` or worker sends it.",
)
def resume(broadcast_id: int, queue_only: bool) -> None:
    """Go on with a paused or interrupted broadcast (an import cut short is
    finished first), then send it unless --queue-only."""
    from textwire.broadcast import control
    from textwire.broadcast.service import import_rows

    with _runtime(send=False) as runtime:
        store = runtime.store
        try:
            change = control.resume(store, broadcast_id, now=datetime.now(UTC))
        except control.ImportUnfinished:
            try:
                with console.status("importing…"):
                    counts = import_rows(store, broadcast_id, runtime.settings)
            except BroadcastError as exc:
                _bad(str(exc))
            out.print(
                f"broadcast #{broadcast_id}: import finished, "
                f"{counts['valid']:,} recipients"
            )
        except BroadcastError as exc:
            _bad(str(exc))
        else:
            if change.changed:
                out.print(change.message)
    if not queue_only:
        _resume_sending(broadcast_id)


@broadcast.command()
@click.argument("broadcast_id", type=int)
def cancel(broadcast_id: int) -> None:
    """Cancel every row of a broadcast not yet sent."""
    from textwire.broadcast import control

    with _runtime(send=False) as runtime:
        try:
            change = control.cancel(runtime.store, broadcast_id, now=datetime.now(UTC))
        except BroadcastError as exc:
            _bad(str(exc))
    out.print(change.message)


@broadcast.command()
@click.argument("broadcast_id", type=int)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here (default: standard output).",
)
def export(broadcast_id: int, output: Path | None) -> None:
    """Each recipient's final status, SID and error code with its reason, as CSV."""
    with _runtime(send=False) as runtime:
        store = runtime.store
        _broadcast(store, broadcast_id)
        if output is None:
            _write_export(store, broadcast_id, sys.stdout)
            return
        with output.open("w", encoding="utf-8", newline="") as file:
            count = _write_export(store, broadcast_id, file)
    console.print(f"{count:,} rows written to {output}")


def _write_export(store: Any, broadcast_id: int, file: IO[str]) -> int:
    from textwire.codes import describe

    writer = csv.writer(file)
    writer.writerow(
        ["outbox_id", "phone", "status", "delivery", "sid", "error_code", "error"]
    )
    count = 0
    for row in store.broadcasts.export(broadcast_id):
        code = row["error_code"]
        reason = row["error"] or ""
        if code is not None:
            reason = f"{describe(code)}" + (f" ({reason})" if reason else "")
        writer.writerow(
            [
                row["id"],
                row["to_number"],
                row["status"],
                row["delivery"],
                row["sid"] or "",
                code if code is not None else "",
                reason,
            ]
        )
        count += 1
    return count


# -- scheduled -------------------------------------------------------------------


@click.group()
def scheduled() -> None:
    """Messages queued for later (`textwire send --at`, ctx.schedule)."""


@scheduled.command(name="list")
@click.option("--all", "everything", is_flag=True, help="Also those sent or cancelled.")
def scheduled_list(everything: bool) -> None:
    """Scheduled messages, soonest first."""
    with _runtime(send=False) as runtime:
        rows = runtime.store.outbox.scheduled(datetime.now(UTC), finished=everything)
    if not rows:
        out.print("no scheduled messages")
        return
    table = Table("id", "to", "send at", "status", "message")
    for row in rows:
        when = describe_time(row["send_at"], row["to"])
        held = row["held_until"]
        if held and row["status"] == "queued" and held > row["send_at"]:
            when += f"\nquiet hours: held until {describe_time(held)}"
        body = row["body"] if len(row["body"]) <= 40 else row["body"][:39] + "…"
        if row["media"]:
            body += f" (+{len(row['media'])} media)"
        table.add_row(str(row["id"]), mask(row["to"]), when, row["status"], body)
    out.print(table)


@scheduled.command(name="cancel")
@click.argument("ids", type=int, nargs=-1, required=True)
def scheduled_cancel(ids: tuple[int, ...]) -> None:
    """Cancel scheduled messages by outbox ID, unless already on their way."""
    from textwire.broadcast.control import cancel_scheduled

    with _runtime(send=False) as runtime:
        results = cancel_scheduled(runtime.store, ids, now=datetime.now(UTC))
    missing = [r for r in results if r.state is None]
    if missing:
        _bad(f"{missing[0].reason} (`textwire scheduled list` shows them)")
    refused = False
    for result in results:
        if result.cancelled:
            out.print(f"#{result.outbox_id} cancelled")
            continue
        refused = True
        console.print(f"#{result.outbox_id} not cancelled: {result.reason}")
    if refused:
        sys.exit(1)

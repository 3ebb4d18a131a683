"""Broadcasts in process: reading the CSV, templates, the preview, the import
and its resumption, on SQLite and PostgreSQL (the ``store`` fixture)."""

from __future__ import annotations

import tracemalloc
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from textwire.broadcast import service
from textwire.broadcast.csvsource import open_source
from textwire.broadcast.plan import Reject
from textwire.broadcast.service import import_rows, prepare, rejects_path
from textwire.broadcast.template import MessageTemplate, RowError
from textwire.config import Settings
from textwire.errors import BroadcastError
from textwire.storage.sql import SqlStore

NOW = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)


def write(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def numbers(n: int, start: int = 0) -> list[str]:
    # Valid US numbers, all different: 415-2xx-xxxx.
    return [f"+1415{2000000 + start + i:07d}" for i in range(n)]


def csv_of(n: int, start: int = 0) -> str:
    lines = ["phone,first_name"]
    lines += [f"{p},Name{i}" for i, p in enumerate(numbers(n, start))]
    return "\n".join(lines) + "\n"


# -- the file ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bom", "delimiter"),
    [
        ("phone,first_name\n+14155550199,Ana\n", False, ","),
        ("phone,first_name\n+14155550199,Ana\n", True, ","),
        ("Phone;First Name\n+14155550199;Ana\n", False, ";"),
        ("mobile\tfirst_name\n+14155550199\tAna\n", True, "\t"),
    ],
)
def test_utf8_with_or_without_bom_and_three_delimiters(
    tmp_path: Path, text: str, bom: bool, delimiter: str
) -> None:
    source = open_source(write(tmp_path / "list.csv", text, bom=bom))
    assert source.delimiter == delimiter
    assert source.number_column in ("phone", "mobile")
    assert list(source.rows()) == [
        (2, {source.number_column: "+14155550199", "first_name": "Ana"})
    ]


@pytest.mark.parametrize("header", ["phone", "Number", "MOBILE", "to", "Cell Phone"])
def test_the_number_column_is_found_by_its_header(tmp_path: Path, header: str) -> None:
    source = open_source(
        write(tmp_path / "l.csv", f"name,{header}\nAna,+14155550199\n")
    )
    assert source.number_column == header.lower().replace(" ", "_")


def test_a_number_column_named_by_hand(tmp_path: Path) -> None:
    path = write(tmp_path / "l.csv", "who,contact\nAna,+14155550199\n")
    with pytest.raises(BroadcastError, match="no number column"):
        open_source(path)
    assert open_source(path, "Contact").number_column == "contact"
    with pytest.raises(BroadcastError, match="no column 'nope'"):
        open_source(path, "nope")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a CSV file"),
        ("phone\n\xe9t\xe9\n".encode("latin-1"), "not a CSV file in UTF-8"),
        (b"", "is empty"),
        (b"  \n\n", "is empty"),
        (b"phone,first_name\n", "a header but no rows"),
        (b"phone,phone\n+14155550199,+14155550199\n", "appears twice"),
    ],
)
def test_files_that_are_not_a_list(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(BroadcastError, match=message):
        open_source(path)


def test_reading_is_streamed(tmp_path: Path) -> None:
    # 100,000 rows (about 3 MB) read one at a time: memory stays flat.
    path = write(tmp_path / "big.csv", csv_of(100_000))
    source = open_source(path)
    tracemalloc.start()
    try:
        count = sum(1 for _ in source.rows())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 100_000
    assert peak < 1_000_000, peak  # a list of the rows would be ~40 MB


# -- the template -------------------------------------------------------------------


def test_templates_render_fields_filters_and_blocks() -> None:
    t = MessageTemplate("Hi {first_name|title}{% if vip is defined %}, VIP{% endif %}!")
    assert t.render({"first_name": "ana"}) == "Hi Ana!"
    assert t.render({"first_name": "ana", "vip": "yes"}) == "Hi Ana, VIP!"
    assert MessageTemplate("Hi {nick|default('there')}").render({}) == "Hi there"


@pytest.mark.parametrize("row", [{}, {"first_name": ""}])
def test_a_missing_field_is_the_rows_error_not_an_empty_hole(
    row: dict[str, str],
) -> None:
    with pytest.raises(RowError, match="template field missing: 'first_name'"):
        MessageTemplate("Hi {first_name}").render(row)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Hi {first_name", "syntax error on line 1"),
        ("Hi {% if %}", "syntax error"),
        ("Hi {{first_name}}", "not {{first_name}}"),
    ],
)
def test_template_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(BroadcastError, match=message):
        MessageTemplate(text)


def test_the_sandbox_refuses_python_internals() -> None:
    with pytest.raises(RowError, match="unsafe"):
        MessageTemplate("{x.__class__.__mro__}").render({"x": "a"})


# -- the preview ----------------------------------------------------------------------


MIXED = """phone,first_name,country,timezone
(415) 555-0199,Ana,,
415.555.0142,Ben,,
+1 415 555 0199,Ana again,,
07400 123456,Chloe,GB,
+49 1512 3456789,Dana,,Europe/Berlin
12,Nobody,,
+14155550123,,,
+14155550111,Zed,XX,
+14155550122,Yan,,Mars/Base
+14155550133,Opted,,
"""


def test_the_preview_counts_everything_and_lists_the_rejects(
    tmp_path: Path, store: SqlStore, settings: Settings
) -> None:
    with store.begin() as conn:
        store.contacts.set_opt_out(conn, "+14155550133", True, NOW)
    path = write(tmp_path / "mixed.csv", MIXED)
    draft = prepare(
        settings,
        path,
        body="Hi {first_name} 🎉",
        media=["https://example.com/a.png"],
        now=NOW,
    )
    preview = draft.preview(store)
    assert (preview.rows, preview.valid, preview.invalid) == (10, 4, 4)
    assert (preview.duplicates, preview.opted_out) == (1, 1)
    assert preview.encodings == Counter({"UCS-2": 4})
    assert preview.ucs2_chars == Counter({"🎉": 4})
    # MMS to the US; the link instead of the picture to GB and DE (policy link).
    assert preview.by_country == {
        "US": Counter({"MMS": 2}),
        "GB": Counter({"SMS": 1}),
        "DE": Counter({"SMS": 1}),
    }
    assert [s.to for s in preview.samples] == ["+14155550199", "+14155550142"]
    assert preview.seconds > 0
    reasons = {r.line: r.reason for r in preview.rejects}
    assert set(reasons) == {7, 8, 9, 10}
    assert "invalid number" in reasons[7]
    assert "template field missing: 'first_name'" in reasons[8]
    assert "unknown country 'XX'" in reasons[9]
    assert "unknown time zone" in reasons[10]
    rejects = rejects_path(path).read_text().splitlines()
    assert rejects[0] == "line,reason,phone,first_name,country,timezone"
    assert len(rejects) == 5 and rejects[1].startswith("7,")
    assert all(isinstance(r, Reject) for r in preview.rejects)


def test_a_template_field_no_column_holds_fails_before_any_row(
    tmp_path: Path, settings: Settings
) -> None:
    path = write(tmp_path / "l.csv", "phone,name\n+14155550199,Ana\n")
    with pytest.raises(BroadcastError, match="'first_name' in every row"):
        prepare(settings, path, body="Hi {first_name}", now=NOW)


def test_local_send_times_per_recipient(
    tmp_path: Path, store: SqlStore, settings: Settings
) -> None:
    path = write(tmp_path / "l.csv", "phone\n+14155550199\n+447400123456\n")
    draft = prepare(settings, path, body="Hi", at="tomorrow 09:00", now=NOW)
    preview = draft.preview(store)
    assert preview.first_at == datetime(2026, 12, 3, 9, 0, tzinfo=UTC)  # London
    assert preview.last_at == datetime(2026, 12, 3, 17, 0, tzinfo=UTC)  # SF


# -- the import ------------------------------------------------------------------------


def test_create_queues_each_valid_recipient_once_at_bulk_priority(
    tmp_path: Path, store: SqlStore, settings: Settings
) -> None:
    path = write(tmp_path / "l.csv", csv_of(30) + f"{numbers(1)[0]},Dup\n")
    draft = prepare(settings, path, body="Hi {first_name}", quiet_hours="off", now=NOW)
    preview = draft.preview(store)
    broadcast_id = draft.create(store, preview, batch=7)
    b = store.broadcasts.get(broadcast_id)
    assert b["status"] == "sending" and b["imported_rows"] == 31
    assert (b["valid"], b["duplicates"]) == (30, 1)
    exported = list(store.broadcasts.export(broadcast_id))
    assert sorted(r["to_number"] for r in exported) == sorted(numbers(30))
    assert {r["status"] for r in exported} == {"queued"}
    with pytest.raises(BroadcastError, match=f"broadcast #{broadcast_id}"):
        draft.create(store, preview)


class Killed(BaseException):
    """Stands in for the process dying right after a committed batch."""


def test_an_interrupted_import_resumes_exactly_once(
    tmp_path: Path,
    store: SqlStore,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    again = "".join(f"{n},Again\n" for n in numbers(5))
    text = csv_of(50) + again + csv_of(20, 50).split("\n", 1)[1]
    path = write(tmp_path / "l.csv", text)
    draft = prepare(settings, path, body="Hi {first_name}", now=NOW)
    preview = draft.preview(store)

    def die_after_two(broadcast_id: int, imported_rows: int) -> None:
        if imported_rows >= 20:
            raise Killed

    monkeypatch.setattr(service, "_after_batch", die_after_two)
    with pytest.raises(Killed):
        draft.create(store, preview, batch=10)
    [b] = store.broadcasts.all()
    assert (b["status"], b["imported_rows"]) == ("importing", 20)
    assert store.broadcasts.progress(b["id"], NOW)["total"] == 20
    # Not sent while importing.
    assert store.outbox.claim(NOW, limit=50, worker_id="w", lease=timedelta(60)) == []

    monkeypatch.undo()
    counts = import_rows(store, b["id"], settings, batch=10)
    assert counts == {
        "rows_read": 75,
        "valid": 70,
        "invalid": 0,
        "duplicates": 5,
        "opted_out": 0,
    }
    phones = [r["to_number"] for r in store.broadcasts.export(b["id"])]
    assert sorted(phones) == sorted(numbers(70)) and len(set(phones)) == 70
    assert store.broadcasts.get(b["id"])["status"] == "sending"


def test_a_changed_file_is_not_resumed(
    tmp_path: Path,
    store: SqlStore,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = write(tmp_path / "l.csv", csv_of(30))
    draft = prepare(settings, path, body="Hi", now=NOW)
    preview = draft.preview(store)
    monkeypatch.setattr(
        service, "_after_batch", lambda *a: (_ for _ in ()).throw(Killed)
    )
    with pytest.raises(Killed):
        draft.create(store, preview, batch=10)
    monkeypatch.undo()
    write(path, csv_of(31))
    [b] = store.broadcasts.all()
    with pytest.raises(BroadcastError, match="changed since it was made"):
        import_rows(store, b["id"], settings)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_preview_keeps_the_numbers_not_the_rows(
    tmp_path: Path, store: SqlStore, settings: Settings
) -> None:
    # The preview holds the set of numbers seen (for duplicates), never the
    # rows: its peak grows by the size of that set alone. (100,000 rows are
    # measured end to end by `make bench`: peak RSS.)
    peaks = []
    for rows in (2_000, 8_000):
        path = write(tmp_path / f"{rows}.csv", csv_of(rows))
        draft = prepare(settings, path, body="Hi {first_name}", now=NOW)
        tracemalloc.start()
        try:
            assert draft.preview(store).valid == rows
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    per_row = (peaks[1] - peaks[0]) / 6_000
    assert per_row < 200, per_row  # a number in a set (~110 B); rows would be more

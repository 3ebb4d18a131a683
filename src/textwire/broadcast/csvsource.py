"""Reading a broadcast's CSV file: streamed, never loaded whole.

UTF-8 with or without a byte-order mark; ``,``, ``;`` or tab between
fields (sniffed from the first lines); a header row naming the columns. The
number column is found by its header (``phone``, ``number``, ``mobile``,
``to`` …) unless named; a ``country`` column gives each row's region and a
``timezone`` column its time zone. Columns are named in templates by their
header, lower-cased, with spaces and punctuation as ``_`` (``First Name`` is
``{first_name}``).

A broadcast knows its file by the SHA-256 of its bytes (:func:`file_sha256`):
the same file under the same name is never queued twice, and an interrupted
import resumes only on the very same file.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import hashlib
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from textwire.errors import BroadcastError

__all__ = [
    "NUMBER_HEADERS",
    "CsvSource",
    "file_sha256",
    "field_name",
    "open_source",
]

NUMBER_HEADERS = (
    "phone",
    "phone_number",
    "number",
    "mobile",
    "mobile_number",
    "mobile_phone",
    "cell",
    "cell_phone",
    "msisdn",
    "to",
    "tel",
    "telephone",
    "whatsapp",
)
"""Headers taken for the number column, in this order of preference."""

COUNTRY_HEADERS = ("country", "country_code", "region")
TIMEZONE_HEADERS = ("timezone", "time_zone", "tz")

_SNIFF_BYTES = 64 * 1024
_DELIMITERS = ",;\t"
_NOT_NAME = re.compile(r"[^0-9a-z]+")


def field_name(header: str) -> str:
    """A column's name in templates: ``"First Name"`` → ``"first_name"``."""
    return _NOT_NAME.sub("_", header.strip().lower()).strip("_")


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as raw:
        for chunk in iter(lambda: raw.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class CsvSource:
    """A CSV file's shape: where it is, how its fields are separated, its
    columns and which of them hold the number, the country and the zone."""

    path: Path
    delimiter: str
    headers: tuple[str, ...]
    fields: tuple[str, ...]
    number_column: str
    country_column: str | None = None
    timezone_column: str | None = None

    def rows(self) -> Iterator[tuple[int, dict[str, str]]]:
        """``(line, row)`` for each data row, streamed: ``line`` is the file
        line the row starts on (the header is line 1), ``row`` maps field
        names to the cells (stripped; missing cells absent).

        Raises:
            BroadcastError: the file stops being readable CSV part-way.
        """
        with _open_text(self.path) as text:
            reader = csv.reader(text, delimiter=self.delimiter)
            try:
                next(reader, None)  # the header
                start = reader.line_num + 1
                for cells in reader:
                    if any(cell.strip() for cell in cells):
                        yield (
                            start,
                            {
                                name: cell.strip()
                                for name, cell in zip(self.fields, cells, strict=False)
                            },
                        )
                    start = reader.line_num + 1
            except (csv.Error, UnicodeDecodeError) as exc:
                raise BroadcastError(
                    f"{self.path.name}: line {reader.line_num}: not readable as "
                    f"CSV ({exc})"
                ) from None


def _open_text(path: Path) -> IO[str]:
    # utf-8-sig drops a byte-order mark when there is one.
    return path.open("r", encoding="utf-8-sig", newline="")


def _head(path: Path) -> str:
    """The first ≤64 KB as text, or a BroadcastError saying why it is no CSV."""
    try:
        with path.open("rb") as raw:
            data = raw.read(_SNIFF_BYTES)
    except FileNotFoundError:
        raise BroadcastError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BroadcastError(f"{path}: is a directory, not a CSV file") from None
    except OSError as exc:
        raise BroadcastError(f"{path}: cannot be read ({exc.strerror})") from None
    if b"\x00" in data:
        raise BroadcastError(f"{path.name} is not a CSV file (it holds binary data)")
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    try:
        # A multi-byte character cut at the end of the sample is fine.
        return decoder.decode(data, final=len(data) < _SNIFF_BYTES)
    except UnicodeDecodeError:
        raise BroadcastError(
            f"{path.name} is not a CSV file in UTF-8 (save it as CSV UTF-8)"
        ) from None


def _delimiter(sample: str) -> str:
    lines = [line for line in sample.splitlines()[:50] if line.strip()]
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        # One column, or too few lines to tell: the header decides.
        header = lines[0] if lines else ""
        counts = {d: header.count(d) for d in _DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","


def open_source(path: Path | str, number_column: str | None = None) -> CsvSource:
    """Look at a CSV file's first lines: its delimiter, header and columns.

    Raises:
        BroadcastError: missing, not CSV (binary, not UTF-8), empty, a header
            without rows, duplicate headers, or no number column.
    """
    path = Path(path)
    sample = _head(path)
    if not sample.strip():
        raise BroadcastError(f"{path.name} is empty")
    delimiter = _delimiter(sample)
    header = next(csv.reader(io.StringIO(sample), delimiter=delimiter), [])
    headers = tuple(cell.strip() for cell in header)
    fields = tuple(field_name(h) for h in headers)
    if not any(fields):
        raise BroadcastError(f"{path.name} has no header row naming its columns")
    seen: set[str] = set()
    for name, raw in zip(fields, headers, strict=True):
        if name and name in seen:
            raise BroadcastError(f"{path.name}: column {raw!r} appears twice")
        seen.add(name)
    number = _number_column(path, headers, fields, number_column)
    source = CsvSource(
        path=path,
        delimiter=delimiter,
        headers=headers,
        fields=fields,
        number_column=number,
        country_column=next((f for f in COUNTRY_HEADERS if f in fields), None),
        timezone_column=next((f for f in TIMEZONE_HEADERS if f in fields), None),
    )
    if next(source.rows(), None) is None:
        raise BroadcastError(f"{path.name} is empty: a header but no rows")
    return source


def _number_column(
    path: Path,
    headers: tuple[str, ...],
    fields: tuple[str, ...],
    wanted: str | None,
) -> str:
    if wanted is not None:
        name = field_name(wanted)
        if name not in fields:
            raise BroadcastError(
                f"{path.name} has no column {wanted!r} (--number-column); its "
                f"columns: {', '.join(headers)}"
            )
        return name
    for candidate in NUMBER_HEADERS:
        if candidate in fields:
            return candidate
    raise BroadcastError(
        f"{path.name} has no number column (a header such as phone, number, "
        f"mobile or to; or name it with --number-column); its columns: "
        f"{', '.join(h for h in headers if h) or 'none'}"
    )

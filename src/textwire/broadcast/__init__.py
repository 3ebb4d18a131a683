"""Broadcasts: one message, rendered per row, to every number in a CSV file.

``textwire broadcast create members.csv --body "Hi {first_name}!"`` reads
the file once for a preview (counts, encodings, segments, MMS vs SMS per
country, sending time), asks, then queues one outbox row per message in
batches (resumable after a crash), which the worker sends at bulk priority:
replies to inbound messages go first. See :mod:`textwire.broadcast.service`.
"""

from __future__ import annotations

from textwire.broadcast.csvsource import CsvSource, open_source
from textwire.broadcast.plan import Planner, Preview
from textwire.broadcast.service import Draft, import_rows, prepare
from textwire.broadcast.template import MessageTemplate

__all__ = [
    "CsvSource",
    "Draft",
    "MessageTemplate",
    "Planner",
    "Preview",
    "import_rows",
    "open_source",
    "prepare",
]

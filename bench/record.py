"""``python -m bench.record [DATABASE_URL ...]``: the webhook's insert alone.

CPU and wall time of one ``SqlInbox.record`` call (the message and its inbox
row, as ``POST /twilio/sms`` stores them), averaged over ``BENCH_RECORDS``
(3,000) calls of new messages from as many phones, after 300 to warm up.
Without arguments: a fresh SQLite file and a fresh PostgreSQL database
(``BENCH_PG_DB`` on the server of ``BENCH_PG_ADMIN_URL``). Not part of
``make bench``: a figure for one function, to compare two versions of it on
one machine, run after run.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from bench.common import (
    drop_pg_database,
    env_int,
    fresh_sqlite,
    migrate,
    reset_pg_database,
)
from bench.webhooks import Signer
from textwire.messages import Inbound
from textwire.storage.sql import SqlStore


def measure(url: str, n: int) -> tuple[float, float]:
    """Microseconds of CPU and of wall time per ``record`` call."""
    store = SqlStore(url)
    try:
        signer = Signer("http://127.0.0.1/twilio/sms", phones=n + 300)
        msgs = [
            Inbound.from_form(dict(parse_qsl(signer.next()[1]))) for _ in range(n + 300)
        ]
        for msg in msgs[:300]:
            store.inbox.record(msg, datetime.now(UTC))
        cpu, wall = time.process_time(), time.perf_counter()
        for msg in msgs[300:]:
            store.inbox.record(msg, datetime.now(UTC))
        return (
            (time.process_time() - cpu) / n * 1e6,
            (time.perf_counter() - wall) / n * 1e6,
        )
    finally:
        store.dispose()


def main(argv: list[str]) -> int:
    n = env_int("BENCH_RECORDS", 3000)
    urls = argv or [fresh_sqlite("record.db"), reset_pg_database()]
    try:
        for url in urls:
            migrate(url)
            cpu, wall = measure(url, n)
            name = url.split(":", 1)[0]
            print(f"{name}: record() {cpu:.0f} us CPU, {wall:.0f} us wall ({n} calls)")
    finally:
        if not argv:
            drop_pg_database()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

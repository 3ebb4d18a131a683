"""Experiments: fixes proposed for ``src/``, patched into the processes under test.

NOT textwire's behaviour. ``BENCH_EXPERIMENTS=name,name make bench`` puts this
directory first on the PYTHONPATH of every process the bench starts, and
Python imports this module at start-up; it patches textwire in memory, in
that process only. The results go to ``bench/results/experiments.{md,json}``
(never ``latest.*``). Each patch models a change proposed in the
"Performance" section of the README, to measure it before it is made:

* ``sqlite_write_lock``: SQLite write transactions wait for an OS file lock
  (``fcntl.flock`` on ``<database>.writelock``, plus a lock per process)
  before ``BEGIN IMMEDIATE``, so a waiting writer is woken the moment the
  lock is free instead of sleeping in SQLite's busy handler, whose back-off
  (up to 100 ms a sleep) lets a busy writer in another process starve it.
* ``steady_pool``: the PostgreSQL pool keeps the same 20 connections
  (``pool_size=20, max_overflow=0``) instead of 10 kept plus 10 "overflow"
  ones that are closed as soon as they are returned: with more sending
  threads than 10, a worker opened and closed a PostgreSQL connection (a
  new backend process each time) for about every fourth message. A thread
  beyond 20 waits a moment for a connection instead; 4 workers stay at 80
  connections, under PostgreSQL's default ``max_connections`` of 100.
* ``core_statements``: the webhook's inserts (the inbound message, the
  contact, each reply's message and outbox row) are built once per dialect
  as Core statements on the tables and executed with a dict of values,
  instead of ``insert(Model).values(...)`` built, coerced and cache-keyed
  again on every request (the same SQL; the same round trips).

Only textwire's own processes are patched (gunicorn serving
``textwire.web:create_app()``, ``textwire run``, ``textwire worker``), never
the quickstart baseline or the emulator.
"""

from __future__ import annotations

import os

_WANTED = {
    name.strip()
    for name in os.environ.get("BENCH_EXPERIMENTS", "").split(",")
    if name.strip()
}


def _sqlite_write_lock() -> None:
    import contextlib
    import fcntl
    import threading
    from collections.abc import Iterator
    from typing import Any

    from textwire.storage import sql

    original = sql.SqlStore.begin
    local = threading.Lock()
    files: dict[str, Any] = {}

    @contextlib.contextmanager
    def begin(self: Any) -> Iterator[Any]:
        if self.dialect != "sqlite":
            with original(self) as conn:
                yield conn
            return
        path = f"{self.engine.url.database}.writelock"
        with local:
            handle = files.get(path) or files.setdefault(path, open(path, "a"))  # noqa: SIM115
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                with original(self) as conn:
                    yield conn
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    sql.SqlStore.begin = begin  # type: ignore[method-assign]


def _steady_pool() -> None:
    from typing import Any

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from textwire.storage import sql

    original = sql._make_engine

    def make_engine(url: str) -> Any:
        if make_url(url).get_backend_name() != "postgresql":
            return original(url)
        return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=0)

    sql._make_engine = make_engine


def _core_statements() -> None:
    from collections.abc import Sequence
    from datetime import datetime
    from typing import Any, cast

    from sqlalchemy import Table, bindparam, select
    from sqlalchemy.dialects import postgresql, sqlite

    from textwire.messages import Inbound, segment_info
    from textwire.storage import sql
    from textwire.storage.schema import Contact, Message, OutboxItem

    messages = cast(Table, Message.__table__)
    contacts = cast(Table, Contact.__table__)
    outbox = cast(Table, OutboxItem.__table__)
    built: dict[str, dict[str, Any]] = {}

    def statements(dialect: str) -> dict[str, Any]:
        if dialect not in built:
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            built[dialect] = {
                "inbound": insert(messages)
                .on_conflict_do_nothing(index_elements=["sid"])
                .returning(messages.c.id),
                "contact": insert(contacts).on_conflict_do_nothing(
                    index_elements=["phone"]
                ),
                "opted_out": select(contacts.c.opted_out).where(
                    contacts.c.phone == bindparam("phone")
                ),
                "message": insert(messages).returning(messages.c.id),
                "outbox": insert(outbox).returning(outbox.c.id),
            }
        return built[dialect]

    def record_inbound(self: Any, conn: Any, msg: Inbound, now: datetime) -> Any:
        values = {
            "direction": "inbound",
            "sid": msg.sid,
            "account_sid": msg.account_sid,
            "messaging_service_sid": msg.messaging_service_sid,
            "from_number": msg.from_,
            "to_number": msg.to,
            "body": msg.body,
            "media": [
                {"url": m.url, "content_type": m.content_type} for m in msg.media
            ],
            "num_segments": msg.num_segments,
            "status": "received",
            "created_at": now,
            "updated_at": now,
        }
        stmt = statements(self.dialect)["inbound"]
        return conn.execute(stmt, values).scalar_one_or_none()

    def ensure_contact(self: Any, conn: Any, phone: str, now: datetime) -> bool:
        st = statements(self.dialect)
        conn.execute(
            st["contact"],
            {"phone": phone, "opted_out": False, "created_at": now, "updated_at": now},
        )
        return bool(conn.execute(st["opted_out"], {"phone": phone}).scalar_one())

    def enqueue(
        self: Any,
        conn: Any,
        *,
        to: str,
        body: str,
        media: Sequence[str],
        from_: str | None,
        messaging_service_sid: str | None,
        now: datetime,
        in_reply_to: int | None = None,
        deliver: bool = True,
    ) -> int:
        st = statements(self.dialect)
        info = segment_info(body)
        message_id = conn.execute(
            st["message"],
            {
                "direction": "outbound",
                "from_number": from_,
                "messaging_service_sid": messaging_service_sid,
                "to_number": to,
                "body": body,
                "media": list(media),
                "num_segments": info.segments,
                "encoding": info.encoding,
                "status": "pending",
                "in_reply_to": in_reply_to,
                "created_at": now,
                "updated_at": now,
            },
        ).scalar_one()
        outbox_id: int = conn.execute(
            st["outbox"],
            {
                "message_id": message_id,
                "to_number": to,
                "from_number": from_,
                "messaging_service_sid": messaging_service_sid,
                "body": body,
                "media": list(media),
                "status": "queued" if deliver else sql.TWIML_OUTBOX,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            },
        ).scalar_one()
        return outbox_id

    sql.SqlStore.record_inbound = record_inbound  # type: ignore[method-assign]
    sql.SqlStore.ensure_contact = ensure_contact  # type: ignore[method-assign]
    sql.SqlStore.enqueue = enqueue  # type: ignore[method-assign]


_PATCHES = {
    "sqlite_write_lock": _sqlite_write_lock,
    "steady_pool": _steady_pool,
    "core_statements": _core_statements,
}


def _is_textwire() -> bool:
    import sys

    args = " ".join(sys.argv)
    return "textwire" in args and "bench." not in args


if _WANTED and _is_textwire():
    for _name in sorted(_WANTED):
        if _name not in _PATCHES:
            raise SystemExit(f"BENCH_EXPERIMENTS: unknown experiment {_name!r}")
        _PATCHES[_name]()

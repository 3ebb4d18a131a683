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


_PATCHES = {
    "sqlite_write_lock": _sqlite_write_lock,
    "steady_pool": _steady_pool,
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

"""gunicorn settings for textwire's metrics with several worker processes.

::

    export PROMETHEUS_MULTIPROC_DIR=/run/textwire-metrics   # an empty directory
    gunicorn -w 4 -c python:textwire.web.gunicorn_conf 'textwire.web:create_app()'

With ``PROMETHEUS_MULTIPROC_DIR`` set, every process writes its metrics to
files in that directory and ``GET /metrics`` adds them up (prometheus-client's
multiprocess mode). :func:`child_exit` tells prometheus-client when gunicorn
has lost a worker, so the live gauges of a dead process are dropped (its
counters stay: what it counted happened). With a gunicorn configuration of
your own, import the hook into it::

    from textwire.web.gunicorn_conf import child_exit, on_starting  # noqa: F401
"""

from __future__ import annotations

import logging
import os
from typing import Any

__all__ = ["child_exit", "on_starting"]

logger = logging.getLogger("textwire.web")

_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _directory() -> str | None:
    return os.environ.get(_ENV) or os.environ.get(_ENV.lower())


def on_starting(server: Any) -> None:
    """Say where the metrics go, and warn when the directory holds a previous
    run's files (their counts would be added to this run's)."""
    path = _directory()
    if not path:
        return
    log = getattr(server, "log", None) or logger
    if not os.path.isdir(path):
        log.error(
            "%s=%s is not a directory: create it (empty) before starting", _ENV, path
        )
        return
    leftovers = [name for name in os.listdir(path) if name.endswith(".db")]
    if leftovers:
        log.warning(
            "%s=%s already holds %d metric file(s): if they are an earlier "
            "run's, their counts are added to this run's (empty it before "
            "starting); `textwire worker` processes may share it",
            _ENV,
            path,
            len(leftovers),
        )


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn's hook after a worker process exited: forget its live gauges."""
    if not _directory():
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]

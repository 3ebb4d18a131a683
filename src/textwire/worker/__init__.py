"""The send worker and its backoff schedule."""

from __future__ import annotations

from textwire.worker.backoff import compute_backoff
from textwire.worker.sender import SendWorker

__all__ = ["SendWorker", "compute_backoff"]

"""Prometheus metrics: every definition, the outbox gauges, and the scrape.

The edges update these (the webhook views in ``textwire.web``, the send worker);
the core (bot, routing, messages) knows nothing of them. ``GET /metrics``
serves them with :func:`render`; ``textwire worker --metrics-port`` with
:func:`serve`.

One process (``textwire run``, a single ``textwire worker``): the counters
live in prometheus-client's default registry. Several processes (gunicorn
workers, and ``textwire worker`` processes on the same machine): set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory, the same for all of them,
before they start; each process then writes its counters to files there and
every scrape adds them up (prometheus-client's multiprocess mode). Run
gunicorn with ``-c python:textwire.web.gunicorn_conf`` so a dead gunicorn
worker is forgotten.

The outbox gauges are never stored in a process: each scrape asks the
database once (:class:`OutboxCollector`), so several processes cannot add
them up.

Metric names::

    textwire_inbound_messages_total{result="new"|"duplicate"}
    textwire_inbox_handled_total{result}
    textwire_handler_duration_seconds                  (histogram)
    textwire_handler_timeouts_total
    textwire_opt_out_keywords_total{keyword="stop"|"start"}
    textwire_replies_queued_total{via="outbox"|"twiml"}
    textwire_send_attempts_total{outcome, code}
    textwire_send_duration_seconds                     (histogram)
    textwire_reconciliations_total{result="found"|"not_found"|"error"}
    textwire_status_callbacks_total{status}
    textwire_inbox_depth                               (gauge, at scrape)
    textwire_inbox_oldest_pending_age_seconds          (gauge, at scrape)
    textwire_outbox_depth                              (gauge, at scrape)
    textwire_outbox_oldest_due_age_seconds             (gauge, at scrape)
    textwire_outbox_waiting{kind="scheduled"|"held"|"bulk"} (gauge, at scrape)
    textwire_database_up                               (gauge, at scrape)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from textwire.errors import ConfigError, StorageError

if TYPE_CHECKING:
    from textwire.storage.base import Store

__all__ = [
    "CONTENT_TYPE",
    "HANDLED_RESULTS",
    "HANDLER_DURATION",
    "HANDLER_TIMEOUTS",
    "INBOUND_MESSAGES",
    "INBOX_HANDLED",
    "OPT_OUT_KEYWORDS",
    "RECONCILIATIONS",
    "REPLIES_QUEUED",
    "SEND_ATTEMPTS",
    "SEND_DURATION",
    "SEND_OUTCOMES",
    "STATUS_CALLBACKS",
    "OutboxCollector",
    "code_label",
    "count_handled",
    "count_inbound",
    "count_send",
    "count_status_callback",
    "multiprocess_dir",
    "registry_for",
    "render",
    "serve",
    "status_label",
]

logger = logging.getLogger("textwire.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The directory of prometheus-client's multiprocess mode, if it is on."""
    return os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())


def _check_multiprocess_dir() -> None:
    # prometheus-client opens its files there as soon as a metric exists: a
    # missing directory would be a FileNotFoundError from deep inside it.
    for name in (MULTIPROC_ENV, MULTIPROC_ENV.lower()):
        if name in os.environ and not os.path.isdir(os.environ[name]):
            raise ConfigError(
                f"{name}={os.environ[name]!r} is not a directory: create an empty "
                "directory for the metrics of all processes before starting them, "
                f"or unset {name} for a single process"
            )


_check_multiprocess_dir()

# Imported after the check: prometheus-client reads the variable on import.
from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric  # noqa: E402
from prometheus_client.registry import Collector  # noqa: E402

CONTENT_TYPE = CONTENT_TYPE_LATEST

# -- definitions -----------------------------------------------------------------

INBOUND_MESSAGES = Counter(
    "textwire_inbound_messages",
    "Inbound message webhooks accepted (signature valid), by result: new "
    "(recorded in the inbox) or duplicate (MessageSid seen before: nothing done).",
    ["result"],
)
HANDLED_RESULTS = ("ok", "error", "timeout", "lost", "retry", "failed")
INBOX_HANDLED = Counter(
    "textwire_inbox_handled",
    "Inbox messages by what handling came to: ok (committed), error (a handler "
    "raised: the apology was committed), timeout (past TEXTWIRE_HANDLER_TIMEOUT: "
    "the apology), lost (another worker had taken the row over: nothing "
    "committed here), retry (textwire's own failure: handled again later), "
    "failed (given up after too many such failures).",
    ["result"],
)
HANDLER_DURATION = Histogram(
    "textwire_handler_duration_seconds",
    "Seconds from a worker starting a message's handler (middleware "
    "included) to its result, whatever it was.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0),
)
HANDLER_TIMEOUTS = Counter(
    "textwire_handler_timeouts",
    "Handlers that ran past TEXTWIRE_HANDLER_TIMEOUT (the contact got the "
    "apology; the late result was dropped).",
)
OPT_OUT_KEYWORDS = Counter(
    "textwire_opt_out_keywords",
    "Opt-out keywords textwire applied: stop (the contact opted out) or start "
    "(opted back in).",
    ["keyword"],
)
REPLIES_QUEUED = Counter(
    "textwire_replies_queued",
    "Replies to inbound messages, written to the outbox for the send worker "
    "(via=outbox) or answered in the webhook's TwiML (via=twiml).",
    ["via"],
)
SEND_OUTCOMES = ("sent", "retry", "ambiguous", "failed", "refused")
SEND_ATTEMPTS = Counter(
    "textwire_send_attempts",
    "Send attempts of outbox rows by outcome: sent (Twilio accepted it), retry "
    "(a retryable error: 429, 5xx, no connection), ambiguous (no answer: "
    "reconciled before any resend), failed (refused for good, or given up), "
    "refused (stopped before any API call: opted out, media check); and by "
    "Twilio error code (none, a catalogued code, or other).",
    ["outcome", "code"],
)
SEND_DURATION = Histogram(
    "textwire_send_duration_seconds",
    "Seconds per messages.create call to Twilio's API, whatever its outcome.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
RECONCILIATIONS = Counter(
    "textwire_reconciliations",
    "Lookups in Twilio's message list after an unclear attempt: found (the "
    "message exists: adopted, not sent again), not_found (sent again), error "
    "(the lookup failed: tried again later).",
    ["result"],
)
STATUS_CALLBACKS = Counter(
    "textwire_status_callbacks",
    "Twilio status callbacks received, by MessageStatus.",
    ["status"],
)

# Label values are bounded: anything else is "other".
_STATUSES = frozenset(
    {
        "accepted",
        "scheduled",
        "queued",
        "sending",
        "sent",
        "delivered",
        "undelivered",
        "failed",
        "read",
        "canceled",
        "partially_delivered",
        "receiving",
        "received",
    }
)
# Twilio's generic API codes the catalogue leaves out (they name no cause).
_GENERIC_CODES = frozenset({20001, 20500, 20503})

# Series that exist from the start, so rate() works before the first event.
for _result in ("new", "duplicate"):
    INBOUND_MESSAGES.labels(_result)
for _result in HANDLED_RESULTS:
    INBOX_HANDLED.labels(_result)
for _keyword in ("stop", "start"):
    OPT_OUT_KEYWORDS.labels(_keyword)
for _via in ("outbox", "twiml"):
    REPLIES_QUEUED.labels(_via)
for _result in ("found", "not_found", "error"):
    RECONCILIATIONS.labels(_result)
SEND_ATTEMPTS.labels("sent", "none")


def code_label(code: int | None) -> str:
    """``"none"``, a code of ``textwire.codes`` (or a generic API code), or
    ``"other"``: the ``code`` label never grows without bound."""
    if code is None:
        return "none"
    from textwire.codes import CODES

    return str(code) if code in CODES or code in _GENERIC_CODES else "other"


def status_label(status: str) -> str:
    """A MessageStatus as a label value (``"other"`` for anything unknown)."""
    status = status.strip().lower()
    return status if status in _STATUSES else "other"


# -- updates (one call at each edge) -------------------------------------------


def count_inbound(*, duplicate: bool) -> None:
    """One accepted inbound webhook: recorded, or a duplicate."""
    INBOUND_MESSAGES.labels("duplicate" if duplicate else "new").inc()


def count_handled(
    result: str, *, keyword: str | None = None, replies: int = 0, twiml: bool = False
) -> None:
    """One inbox message handled (or not), and what came of it."""
    if result not in HANDLED_RESULTS:
        raise ValueError(f"unknown handling result {result!r}")
    INBOX_HANDLED.labels(result).inc()
    if keyword in ("stop", "start"):
        OPT_OUT_KEYWORDS.labels(keyword).inc()
    if replies:
        REPLIES_QUEUED.labels("twiml" if twiml else "outbox").inc(replies)


def count_send(outcome: str, code: int | None = None) -> None:
    """One send attempt (or local refusal) of an outbox row."""
    if outcome not in SEND_OUTCOMES:
        raise ValueError(f"unknown send outcome {outcome!r}")
    SEND_ATTEMPTS.labels(outcome, code_label(code)).inc()


def count_status_callback(status: str) -> None:
    STATUS_CALLBACKS.labels(status_label(status)).inc()


# -- the outbox, asked at each scrape --------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


class OutboxCollector:
    """``textwire_outbox_depth``, ``textwire_outbox_oldest_due_age_seconds``
    and the inbox's two gauges from one query each at each scrape, and
    ``textwire_database_up``.

    Outbox depth counts open rows (queued, being sent, to reconcile); its age
    is how long the earliest row that is due (its next attempt time has come)
    has been waiting for it: 0 when nothing is due. Inbox depth counts
    messages pending or being handled; its age is the oldest pending one's.
    When the database does not answer, only ``textwire_database_up 0`` is
    reported.
    """

    def __init__(
        self, store: Store, *, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self.store = store
        self.clock = clock

    def describe(self) -> Iterable[Metric]:
        return []  # nothing to check at registration: no query then

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "textwire_database_up",
            "1 when the queries of this scrape succeeded, else 0.",
        )
        now = self.clock()
        try:
            depth, oldest = self.store.outbox.stats(now)
            inbox_depth, inbox_oldest = self.store.inbox.stats(now)
            waiting = self.store.outbox.waiting_counts(now)
        except StorageError as exc:
            logger.warning("metrics: outbox query failed: %s", exc)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        age = max((now - oldest).total_seconds(), 0.0) if oldest else 0.0
        inbox_age = (
            max((now - inbox_oldest).total_seconds(), 0.0) if inbox_oldest else 0.0
        )
        return [
            up,
            GaugeMetricFamily(
                "textwire_inbox_depth",
                "Inbox messages not yet handled (pending, or being handled), "
                "counted at this scrape.",
                value=inbox_depth,
            ),
            GaugeMetricFamily(
                "textwire_inbox_oldest_pending_age_seconds",
                "Seconds the oldest pending inbox message has waited since it "
                "arrived (0 when none waits), at this scrape.",
                value=inbox_age,
            ),
            GaugeMetricFamily(
                "textwire_outbox_depth",
                "Outbox rows not yet sent or failed (queued, being sent, or "
                "to be reconciled), counted at this scrape.",
                value=depth,
            ),
            GaugeMetricFamily(
                "textwire_outbox_oldest_due_age_seconds",
                "Seconds the earliest due outbox row has waited since it became "
                "due (0 when none is due), at this scrape.",
                value=age,
            ),
            _waiting(waiting),
        ]


def _waiting(counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "textwire_outbox_waiting",
        "Open outbox rows by kind: scheduled (their send time is ahead), held "
        "(inside the recipient's quiet hours), bulk (a broadcast's), at this "
        "scrape.",
        labels=["kind"],
    )
    for kind in ("scheduled", "held", "bulk"):
        family.add_metric([kind], counts.get(kind, 0))
    return family


class _Forward:
    """Everything another registry holds (the default one, in one process)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        return self.source.collect()


def registry_for(store: Store | None) -> CollectorRegistry:
    """A registry with textwire's metrics and, when ``store`` is given, the
    outbox gauges: the sum of every process's files in multiprocess mode,
    else this process's default registry."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Forward(REGISTRY))
    if store is not None:
        collector: Collector = OutboxCollector(store)
        registry.register(collector)
    return registry


def render(store: Store | None) -> bytes:
    """The Prometheus text exposition of :func:`registry_for` (``CONTENT_TYPE``)."""
    return generate_latest(registry_for(store))


def serve(port: int, *, host: str = "127.0.0.1", store: Store | None) -> Any:
    """Serve ``/metrics`` on a thread of this process (``textwire worker
    --metrics-port``); returns the server (``shutdown()`` stops it)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=registry_for(store))
    return server

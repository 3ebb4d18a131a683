"""The send worker: claim due outbox rows, send each once, record what happened."""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from textwire import metrics
from textwire.codes import CODES, OPTED_OUT, describe, means_opted_out
from textwire.config import MAX_SEND_CONCURRENCY, Settings
from textwire.errors import (
    AmbiguousSendError,
    PermanentSendError,
    RateLimited,
    SendError,
    StorageError,
    TemporarySendError,
)
from textwire.media import probe_media
from textwire.phone import mask
from textwire.ratelimit import send_cost, sender_ceiling
from textwire.storage.base import Store
from textwire.storage.outbox import ClaimedItem, RatePlan, SentResult
from textwire.transports.base import OutboundMessage, SentRecord, Transport
from textwire.worker.backoff import compute_backoff

__all__ = ["SendWorker"]

logger = logging.getLogger("textwire.worker")

# How far before the first attempt to look when reconciling (clock skew).
RECONCILE_SLACK = timedelta(minutes=2)


def sender_key(item: ClaimedItem) -> str:
    """Which sender's rate limit a row counts against."""
    return _key(item.from_, item.messaging_service_sid)


def _key(from_: str | None, service: str | None) -> str:
    return from_ or service or "default"


# How far ahead a broadcast's (bulk) row may take its sender's next slot: a
# reply queued behind 10,000 of them then waits at most this long plus one
# bulk message's cost (a second per segment on a long code) for its own.
BULK_MAX_WAIT = 0.25

# Sends in flight when the worker sizes itself: at least this many, at most
# the pool's threads; until it has seen the API's latency it assumes this.
MIN_IN_FLIGHT = 4
MAX_IN_FLIGHT = MAX_SEND_CONCURRENCY
ASSUMED_LATENCY = 0.25


class SendWorker:
    """Delivers the outbox: one ``messages.create`` per row, retried safely.

    Steppable for tests (``run_once(now=...)`` never sleeps) and runnable in a
    thread (``start()``) or in its own process (``textwire worker``)::

        worker = SendWorker(store, transport, settings=settings)
        worker.run_once()                       # one batch, now
        stop = threading.Event()
        worker.run_forever(stop)                # until stop.set()

    Retryable errors wait ``compute_backoff(attempt)`` (Twilio's Retry-After
    wins); permanent ones fail the row with Twilio's code and a readable
    reason; an ambiguous one (timeout after the request went out) is
    reconciled against Twilio's message list before anything is sent again.

    ``broadcast`` restricts it to that broadcast's rows (``textwire broadcast
    create`` sends its own rows that way while no worker runs).
    """

    def __init__(
        self,
        store: Store,
        transport: Transport,
        *,
        settings: Settings | None = None,
        worker_id: str | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
        broadcast: int | None = None,
    ) -> None:
        settings = settings or Settings()
        self.store = store
        self.transport = transport
        self.max_attempts = settings.max_send_attempts
        self.backoff_base = settings.backoff_base
        self.backoff_cap = settings.backoff_cap
        self.batch_size = settings.worker_batch_size
        # None: sized from the sender's ceiling and the latency seen (auto).
        self.fixed_concurrency = settings.worker_concurrency
        self.ceiling = sender_ceiling(settings) if settings.rate_limit else None
        self._latency = ASSUMED_LATENCY
        self.lease = timedelta(seconds=settings.lease_seconds)
        self.poll_interval = settings.worker_poll_interval
        self.probe_media = settings.probe_media
        self.allow_private_media = settings.allow_private_media
        self.public_url = settings.public_url
        self.rate_limit = settings.rate_limit
        self.rate_mps = settings.rate_limit_mps
        self.rate_max_wait = settings.rate_limit_max_wait
        self._sleep = sleep
        self._monotonic = time.monotonic
        self.worker_id = worker_id or (
            f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        self._rng = rng or random.Random()
        self.broadcast = broadcast
        self._plan = (
            RatePlan(
                key=_key,
                cost=lambda key, segments: send_cost(key, segments, self.rate_mps),
                max_wait=self.rate_max_wait,
                bulk_max_wait=min(self.rate_max_wait, BULK_MAX_WAIT),
            )
            if self.rate_limit
            else None
        )
        self._wake = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        # Sends in flight in the pool (run_forever keeps it near concurrency).
        self._in_flight = 0
        self._done = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        # Sends waiting to be recorded together (see _record).
        self._recording = threading.Lock()
        self._to_record: list[SentResult] = []
        self._recorder_busy = False

    # -- running -------------------------------------------------------------

    @property
    def concurrency(self) -> int:
        """Sends to keep in flight: ``TEXTWIRE_WORKER_CONCURRENCY`` when set,
        else enough to reach the sender's ceiling at the API latency seen."""
        if self.fixed_concurrency is not None:
            return self.fixed_concurrency
        if self.ceiling is None:
            return MAX_IN_FLIGHT // 2
        # Twice the sends the ceiling keeps busy at this latency: a claimed
        # row also waits for its rate-limit slot, and the threads are only
        # refilled once half of them are free (measured: 1.25 times left a
        # worker at 88 % of a 300/s ceiling, twice reached 98 %).
        wanted = math.ceil(self.ceiling * self._latency * 2) + 4
        return max(MIN_IN_FLIGHT, min(MAX_IN_FLIGHT, wanted))

    def _observe(self, seconds: float) -> None:
        # Exponentially weighted: a few slow answers do not swing it.
        self._latency = 0.8 * self._latency + 0.2 * seconds

    def wake(self) -> None:
        """Cut the current idle wait short: there is new work."""
        self._wake.set()

    def run_once(
        self,
        now: datetime | None = None,
        *,
        limit: int | None = None,
        wait: bool = True,
        only: Sequence[int] | None = None,
    ) -> int:
        """Claim one batch of due rows and process it; return how many.

        Args:
            now: the time to act at (tests pass it to step through backoff
                without sleeping); the current time when omitted.
            limit: the most rows to claim; ``batch_size`` when omitted.
            wait: process the batch before returning. ``False`` hands the rows
                to the sending threads and returns at once (``run_forever``
                keeps the threads busy that way).
            only: claim only these outbox ids (``textwire send`` sends its
                own message, nothing else).
        """
        claim_time = now or datetime.now(UTC)
        items = self.store.outbox.claim(
            claim_time,
            limit=limit or self.batch_size,
            worker_id=self.worker_id,
            lease=self.lease,
            rates=self._plan,
            only=only,
            broadcast=self.broadcast,
        )
        if not items:
            return 0
        claimed_at = self._monotonic()

        def process(item: ClaimedItem) -> None:
            self._process(item, now, opted_out=item.opted_out, claimed_at=claimed_at)

        if not wait:
            pool = self._executor()
            for item in items:
                with self._done:
                    self._in_flight += 1
                pool.submit(self._process_in_pool, process, item)
        elif self.concurrency == 1 or len(items) == 1:
            for item in items:
                process(item)
        else:
            list(self._executor().map(process, items))
        return len(items)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            threads = self.fixed_concurrency or MAX_IN_FLIGHT
            self._pool = ThreadPoolExecutor(threads, thread_name_prefix="textwire-send")
        return self._pool

    def _process_in_pool(
        self, process: Callable[[ClaimedItem], None], item: ClaimedItem
    ) -> None:
        try:
            process(item)
        finally:
            with self._done:
                self._in_flight -= 1
                self._done.notify()
            # A row waiting behind this one (the next part of a reply to the
            # same phone) may be due now.
            self._wake.set()

    def run_forever(self, stop: threading.Event) -> None:
        """Keep up to ``concurrency`` sends in flight until ``stop`` is set;
        errors are logged, never fatal.

        Rows are claimed whenever at least half the sending threads are free
        (up to ``batch_size`` at a time), not batch after batch: waiting for a
        whole batch (its slowest send, its last rate-limit slot) before the
        next claim leaves the other threads idle, and capped a worker well
        below its rate limit.
        """
        logger.info("send worker %s started", self.worker_id)
        failures = 0
        while not stop.is_set():
            with self._done:
                while (
                    self.concurrency - self._in_flight
                    < max(1, min(self.batch_size, self.concurrency) // 2)
                    and not stop.is_set()
                ):
                    self._done.wait(0.5)
                room = min(self.batch_size, self.concurrency - self._in_flight)
            if stop.is_set():
                break
            try:
                claimed = self.run_once(limit=room, wait=False)
                failures = 0
            except StorageError:
                failures += 1
                logger.exception("outbox claim failed (%d in a row)", failures)
                stop.wait(min(30.0, 0.5 * 2**failures))
                continue
            except Exception:
                failures += 1
                logger.exception("send worker iteration crashed")
                stop.wait(min(30.0, 0.5 * 2**failures))
                continue
            if claimed == 0:
                self._wake.wait(self.poll_interval)
                self._wake.clear()
        logger.info("send worker %s stopped", self.worker_id)

    def start(self) -> threading.Thread:
        """Run ``run_forever`` in a daemon thread; ``stop()`` ends it."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.run_forever, args=(self._stop,), name="textwire-worker"
        )
        self._thread.daemon = True
        self._thread.start()
        return self._thread

    def stop(self, timeout: float | None = 10.0) -> None:
        """Finish the sends in flight, then stop the thread ``start()`` made."""
        self._stop.set()
        self._wake.set()
        with self._done:
            self._done.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # -- one row ---------------------------------------------------------------

    def _process(
        self,
        item: ClaimedItem,
        now: datetime | None,
        *,
        opted_out: bool = False,
        claimed_at: float | None = None,
    ) -> None:
        try:
            self._deliver(
                item,
                now,
                opted_out=opted_out,
                claimed_at=self._monotonic() if claimed_at is None else claimed_at,
            )
        except Exception:
            # The lease runs out and the row is reconciled then; nothing is lost.
            logger.exception("outbox %s: unexpected failure", item.id)

    def _deliver(
        self,
        item: ClaimedItem,
        now: datetime | None,
        *,
        opted_out: bool,
        claimed_at: float,
    ) -> None:
        if item.reconcile:
            try:
                found = self._reconcile(item)
            except SendError as exc:
                self._retry(item, exc, now, unknown=True)
                metrics.RECONCILIATIONS.labels("error").inc()
                return
            metrics.RECONCILIATIONS.labels(
                "not_found" if found is None else "found"
            ).inc()
            if found is not None:
                logger.info(
                    "outbox %s: found at Twilio as %s after an unclear attempt; "
                    "not sending again",
                    item.id,
                    found.sid,
                )
                self.store.outbox.mark_sent(
                    item,
                    self.worker_id,
                    sid=found.sid,
                    status=found.status,
                    num_segments=None,
                    now=now or datetime.now(UTC),
                )
                return
            if item.attempts > self.max_attempts:
                self._fail(item, None, "gave up: Twilio never confirmed it", now)
                metrics.count_send("failed")
                return

        if opted_out:
            # Refused here, without an API call: Twilio would answer 21610.
            self._fail(
                item,
                OPTED_OUT,
                "recipient opted out (replied STOP); not sent until they text START",
                now,
            )
            metrics.count_send("refused", OPTED_OUT)
            return

        if self.probe_media and item.media:
            problems = probe_media(
                item.media,
                allow_private=self.allow_private_media,
                own_url=self.public_url,
            )
            if problems:
                self._fail(
                    item, None, "media check failed: " + "; ".join(problems), now
                )
                metrics.count_send("refused")
                return

        self._pace(item, now)

        message = OutboundMessage(
            to=item.to,
            body=item.body,
            media=item.media,
            from_=item.from_,
            messaging_service_sid=item.messaging_service_sid,
            outbox_id=item.id,
        )
        started = time.perf_counter()
        if not self._still_ours(item, now, claimed_at):
            return
        try:
            receipt = self.transport.send(message)
        except PermanentSendError as exc:
            metrics.SEND_DURATION.observe(time.perf_counter() - started)
            self._fail(item, exc.code, exc.reason, now)
            metrics.count_send("failed", exc.code)
            if means_opted_out(exc.code):
                with self.store.begin() as conn:
                    self.store.contacts.set_opt_out(
                        conn, item.to, True, now or datetime.now(UTC)
                    )
            return
        except AmbiguousSendError as exc:
            metrics.SEND_DURATION.observe(time.perf_counter() - started)
            self._retry(item, exc, now, unknown=True)
            metrics.count_send("ambiguous", exc.code)
            return
        except TemporarySendError as exc:
            metrics.SEND_DURATION.observe(time.perf_counter() - started)
            retrying = self._retry(item, exc, now)
            metrics.count_send("retry" if retrying else "failed", exc.code)
            return
        elapsed = time.perf_counter() - started
        metrics.SEND_DURATION.observe(elapsed)
        self._observe(elapsed)
        self._record(
            SentResult(item, receipt.sid, receipt.status, receipt.num_segments), now
        )

    def _record(self, sent: SentResult, now: datetime | None) -> None:
        """Mark ``sent`` in the database, together with the other sends that
        finished meanwhile: the first thread to arrive commits for everyone
        waiting (one transaction, one connection), the others leave theirs
        to it. The caller returns once its row is committed or handed over;
        every row handed over is committed before the committing thread
        returns, and a lost commit leaves the rows to reconciliation."""
        with self._recording:
            self._to_record.append(sent)
            if self._recorder_busy:
                return
            self._recorder_busy = True
        try:
            while True:
                with self._recording:
                    batch, self._to_record = self._to_record, []
                    if not batch:
                        self._recorder_busy = False
                        return
                self._commit_sent(batch, now)
        except BaseException:
            with self._recording:
                self._recorder_busy = False
            raise

    def _commit_sent(self, batch: list[SentResult], now: datetime | None) -> None:
        try:
            recorded = self.store.outbox.mark_sent_many(
                batch, self.worker_id, now=now or datetime.now(UTC)
            )
        except StorageError:
            # The rows stay "sending": once their lease runs out they are
            # reconciled against Twilio's list and adopted, never resent.
            logger.exception(
                "recording %d sent rows failed; they are reconciled later", len(batch)
            )
            return
        for sent, done in zip(batch, recorded, strict=True):
            if not done:
                continue
            # Counted after the row is marked: a worker killed before that
            # leaves the row to reconciliation, which counts it as found.
            metrics.count_send("sent")
            logger.info(
                "outbox %s sent sid=%s to=%s status=%s attempt=%d",
                sent.item.id,
                sent.sid,
                mask(sent.item.to),
                sent.status,
                sent.item.attempts,
            )

    def _pace(self, item: ClaimedItem, now: datetime | None) -> None:
        """Wait for the slot the claim reserved against the sender's rate limit."""
        if item.slot is None:
            return
        wait = item.slot - (now or datetime.now(UTC)).timestamp()
        if wait > 0:
            self._sleep(wait)

    def _still_ours(
        self, item: ClaimedItem, now: datetime | None, claimed_at: float
    ) -> bool:
        """Renew the row's lease if half of it is gone; False if it was lost.

        A slow batch (timeouts piling up) can outlive the lease; another worker
        may then have taken the row over, and sending it here too would be a
        double text. The renewal is atomic: it succeeds only while the row is
        still this worker's, and then no one else can take it.
        """
        if self._monotonic() - claimed_at < self.lease.total_seconds() / 2:
            return True
        if self.store.outbox.renew_lease(
            item, self.worker_id, now=now or datetime.now(UTC), lease=self.lease
        ):
            return True
        logger.warning(
            "outbox %s: lease lost to another worker before sending; not sending",
            item.id,
        )
        return False

    def _reconcile(self, item: ClaimedItem) -> SentRecord | None:
        since = (item.first_attempt_at or item.created_at) - RECONCILE_SLACK
        candidates = [
            record
            for record in self.transport.find_sent(
                to=item.to, from_=item.from_, since=since
            )
            if record.body == item.body and record.num_media == len(item.media)
        ]
        # Two identical texts to one phone: adopt one no other row has claimed.
        # The row's own SID may be stored already, by a status callback that
        # beat the reconciliation: that one is ours to adopt, not "taken".
        taken = self.store.messages.known_sids(
            [record.sid for record in candidates], except_message=item.message_id
        )
        for record in candidates:
            if record.sid not in taken:
                return record
        return None

    def _retry(
        self,
        item: ClaimedItem,
        exc: SendError,
        now: datetime | None,
        *,
        unknown: bool = False,
    ) -> bool:
        """Schedule the row's next attempt; False when it failed instead (out
        of attempts)."""
        at = now or datetime.now(UTC)
        if item.attempts >= self.max_attempts and not unknown:
            self._fail(
                item,
                exc.code,
                f"gave up after {item.attempts} attempts: {exc.reason}",
                now,
            )
            return False
        delay = compute_backoff(
            item.attempts, base=self.backoff_base, cap=self.backoff_cap, rng=self._rng
        )
        if isinstance(exc, RateLimited):
            if exc.retry_after is not None:
                delay = exc.retry_after
            if self.rate_limit:
                # Slow the sender down for every worker, not just this row.
                self.store.rates.slow_down(
                    sender_key(item), until=at.timestamp() + delay
                )
        self.store.outbox.mark_retry(
            item,
            self.worker_id,
            next_attempt_at=at + timedelta(seconds=delay),
            error=exc.reason,
            code=exc.code,
            now=at,
            unknown=unknown,
        )
        logger.warning(
            "outbox %s to=%s attempt %d failed (%s%s): %s; %s in %.1f s",
            item.id,
            mask(item.to),
            item.attempts,
            type(exc).__name__,
            f" {exc.code}" if exc.code else "",
            exc.reason,
            "reconciling" if unknown else "retrying",
            delay,
        )
        return True

    def _fail(
        self, item: ClaimedItem, code: int | None, reason: str, now: datetime | None
    ) -> None:
        if code is not None and code not in CODES:
            reason = f"{reason} ({describe(code)})"
        self.store.outbox.mark_failed(
            item,
            self.worker_id,
            error=reason,
            code=code,
            now=now or datetime.now(UTC),
        )
        logger.error(
            "outbox %s to=%s failed%s: %s",
            item.id,
            mask(item.to),
            f" with Twilio code {code}" if code else "",
            reason,
        )

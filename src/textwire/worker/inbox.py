"""The inbox worker: claim recorded messages, run the bot, commit its effects.

Each claimed message is handled in a thread of the handler pool (an
``async def`` handler is awaited on the worker's event loop), outside any
database transaction, with a time limit. What it did (replies, conversation
state, opt-out) is committed in one short transaction, fenced by the claim,
together with marking the row done. So a worker that dies mid-handler, or
whose lease another worker took over, commits nothing, and the message is
handled again elsewhere: effects exactly once, the handler at least once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from textwire import metrics
from textwire.bot import Bot, Outcome
from textwire.config import Settings
from textwire.context import HandleOptions
from textwire.errors import StorageError
from textwire.mediastore import media_source_for
from textwire.phone import mask
from textwire.service import commit_outcome
from textwire.storage.base import Store
from textwire.storage.inbox import ClaimedInbound
from textwire.worker.backoff import compute_backoff
from textwire.worker.loop import LoopThread

__all__ = ["MAX_INBOX_ATTEMPTS", "InboxWorker"]

logger = logging.getLogger("textwire.worker")

T = TypeVar("T")

MAX_INBOX_ATTEMPTS = 10
"""Claims of one inbox row after which textwire stops retrying its own
failures (the row is marked failed, the message stays stored)."""


class _Abandoned(BaseException):
    """The handler ran out of time: unwind, its result is dropped."""


class _Task:
    """One message being handled: its async part, and whether it was abandoned."""

    def __init__(self, item: ClaimedInbound, loop: LoopThread) -> None:
        self.item = item
        self._loop = loop
        self._lock = threading.Lock()
        self._future: concurrent.futures.Future[Any] | None = None
        self.abandoned = False

    def run_async(self, awaitable: Awaitable[T]) -> T:
        with self._lock:
            if self.abandoned:
                raise _Abandoned
            self._future = future = self._loop.submit(awaitable)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise _Abandoned from None

    def abandon(self) -> None:
        with self._lock:
            self.abandoned = True
            if self._future is not None:
                self._future.cancel()


class InboxWorker:
    """Handles the inbox: one contact's messages in order, contacts in parallel.

    Steppable for tests (``run_once(now=...)`` claims, handles and commits a
    batch before returning) and runnable on the worker's event loop
    (``start()`` / ``stop()``)::

        worker = InboxWorker(store, bot, settings=settings)
        worker.run_once()
    """

    def __init__(
        self,
        store: Store,
        bot: Bot,
        *,
        settings: Settings | None = None,
        worker_id: str | None = None,
        loop: LoopThread | None = None,
        on_queued: Callable[[], None] | None = None,
        public_url: str | None = None,
    ) -> None:
        settings = settings or Settings()
        self.store = store
        self.bot = bot
        self.settings = settings
        self.options = dataclasses.replace(
            HandleOptions.from_settings(settings, public_url),
            media_source=media_source_for(settings),
        )
        self.concurrency = settings.handler_concurrency
        self.timeout = settings.handler_timeout
        self.lease = timedelta(seconds=max(settings.lease_seconds, 1.0))
        self.poll_interval = settings.worker_poll_interval
        self.worker_id = worker_id or (
            f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        self._owns_loop = loop is None
        self.loop = loop or LoopThread("textwire-inbox")
        self.on_queued = on_queued or (lambda: None)
        self._pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor] | None = None
        self._in_flight: dict[int, ClaimedInbound] = {}
        self._wake: asyncio.Event | None = None
        self._runner: concurrent.futures.Future[None] | None = None
        self._stopping = False

    # -- stepping (tests, textwire send) ------------------------------------

    def run_once(self, now: datetime | None = None, *, limit: int | None = None) -> int:
        """Claim due rows, handle each, commit; return how many were claimed."""
        return self.loop.run(self._batch(now, limit or self.concurrency))

    async def _batch(self, now: datetime | None, limit: int) -> int:
        items = await self._in_io(self._claim, now, limit)
        await asyncio.gather(*(self._run(item, now) for item in items))
        return len(items)

    def _claim(self, now: datetime | None, limit: int) -> list[ClaimedInbound]:
        items = self.store.inbox.claim(
            now or datetime.now(UTC),
            limit=limit,
            worker_id=self.worker_id,
            lease=self.lease,
        )
        for item in items:
            self._in_flight[item.id] = item
        return items

    # -- one message ---------------------------------------------------------

    async def _run(self, item: ClaimedInbound, now: datetime | None) -> None:
        loop = asyncio.get_running_loop()
        task = _Task(item, self.loop)
        started = time.perf_counter()
        try:
            pool = self._executors()[0]
            future = loop.run_in_executor(pool, self._dispatch, task, now)
            try:
                outcome = await asyncio.wait_for(asyncio.shield(future), self.timeout)
            except TimeoutError:
                task.abandon()
                outcome = self._timed_out(item)
            except Exception as exc:
                # textwire's own failure before or around the handler (the
                # state could not be read): the message is handled later.
                await self._in_io(self._retry, item, exc, now)
                return
            metrics.HANDLER_DURATION.observe(time.perf_counter() - started)
            await self._in_io(self._commit, item, outcome, now)
        finally:
            self._in_flight.pop(item.id, None)

    def _dispatch(self, task: _Task, now: datetime | None) -> Outcome:
        item = task.item
        try:
            return self.bot.handle(
                item.msg,
                state_store=self.store.states.reader(),
                opted_out=item.opted_out,
                now=now or datetime.now(UTC),
                options=self._options(item),
                run_async=task.run_async,
                handoff=item.handoff,
            )
        except _Abandoned:
            return Outcome(timed_out=True)

    def _options(self, item: ClaimedInbound) -> HandleOptions:
        if item.public_url and not self.options.public_url:
            return dataclasses.replace(self.options, public_url=item.public_url)
        return self.options

    def _timed_out(self, item: ClaimedInbound) -> Outcome:
        logger.error(
            "inbox %s (%s from=%s): the handler ran past TEXTWIRE_HANDLER_TIMEOUT "
            "(%.0f s); the contact gets the apology, a late result is dropped",
            item.id,
            item.msg.sid,
            mask(item.msg.from_),
            self.timeout,
        )
        metrics.HANDLER_TIMEOUTS.inc()
        return Outcome(
            replies=tuple(self.bot.apology_for(self.options)), timed_out=True
        )

    def _commit(
        self, item: ClaimedInbound, outcome: Outcome, now: datetime | None
    ) -> None:
        try:
            outbox_ids = commit_outcome(
                self.store,
                item,
                self.worker_id,
                outcome,
                self.settings,
                now=now or datetime.now(UTC),
            )
        except StorageError as exc:
            self._retry(item, exc, now)
            return
        if outbox_ids:
            self.on_queued()

    def _retry(
        self, item: ClaimedInbound, exc: BaseException, now: datetime | None
    ) -> None:
        """Give the row back for a later attempt (textwire's own failure)."""
        failed = item.attempts >= MAX_INBOX_ATTEMPTS
        delay = compute_backoff(item.attempts, base=1.0, cap=60.0)
        logger.warning(
            "inbox %s (%s): %s: %s; %s",
            item.id,
            item.msg.sid,
            type(exc).__name__,
            exc,
            "giving up (marked failed)" if failed else f"retrying in {delay:.1f} s",
        )
        metrics.count_handled("failed" if failed else "retry")
        try:
            self.store.inbox.release(
                item,
                self.worker_id,
                until=(now or datetime.now(UTC)) + timedelta(seconds=delay),
                error=f"{type(exc).__name__}: {exc}"[:500],
                failed=failed,
            )
        except StorageError:
            # Still down: the lease runs out and any worker takes it again.
            logger.warning("inbox %s: could not be given back now", item.id)

    def _executors(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        """The handler pool, and the one for claims and commits: apart, so a
        pool full of stuck handlers can still commit their apologies."""
        if self._pools is None:
            self._pools = (
                ThreadPoolExecutor(self.concurrency, "textwire-handler"),
                ThreadPoolExecutor(4, "textwire-inbox-db"),
            )
        return self._pools

    async def _in_io(self, func: Callable[..., T], *args: Any) -> T:
        io = self._executors()[1]
        return await asyncio.get_running_loop().run_in_executor(io, func, *args)

    # -- running -------------------------------------------------------------

    def wake(self) -> None:
        """Claim now: a message was recorded."""
        wake = self._wake
        if wake is not None:
            # RuntimeError: the loop closed meanwhile.
            with contextlib.suppress(RuntimeError):
                self.loop.loop.call_soon_threadsafe(wake.set)

    def start(self) -> None:
        """Handle the inbox on the event loop until ``stop()``."""
        if self._runner is None or self._runner.done():
            self._stopping = False
            self._runner = self.loop.submit(self._forever())

    async def _forever(self) -> None:
        logger.info("inbox worker %s started", self.worker_id)
        self._wake = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat())
        running: set[asyncio.Task[None]] = set()
        failures = 0
        try:
            while not self._stopping:
                room = self.concurrency - len(self._in_flight)
                claimed: list[ClaimedInbound] = []
                if room > 0:
                    try:
                        claimed = await self._in_io(self._claim, None, min(room, 64))
                        failures = 0
                    except StorageError:
                        failures += 1
                        logger.exception("inbox claim failed (%d in a row)", failures)
                        await asyncio.sleep(min(30.0, 0.5 * 2**failures))
                        continue
                for item in claimed:
                    job = asyncio.create_task(self._run(item, None))
                    running.add(job)
                    job.add_done_callback(running.discard)
                    job.add_done_callback(self._slot_freed)
                if claimed and len(claimed) == room:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                self._wake.clear()
        finally:
            heartbeat.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
            logger.info("inbox worker %s stopped", self.worker_id)

    def _slot_freed(self, job: asyncio.Task[None]) -> None:
        # A handler finished: room to claim again (the next message of the
        # same contact may be due now).
        if self._wake is not None:
            self._wake.set()

    async def _heartbeat(self) -> None:
        """Keep the leases of the rows in hand while their handlers run."""
        every = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            ids = list(self._in_flight)
            if not ids:
                continue
            try:
                renew = functools.partial(
                    self.store.inbox.renew,
                    ids,
                    self.worker_id,
                    now=datetime.now(UTC),
                    lease=self.lease,
                )
                await self._in_io(renew)
            except StorageError:
                logger.warning("inbox leases could not be renewed now")

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the messages in hand (up to ``timeout``), then stop."""
        self._stopping = True
        self.wake()
        runner, self._runner = self._runner, None
        if runner is not None:
            try:
                runner.result(timeout)
            except Exception:
                logger.warning("inbox worker did not stop cleanly", exc_info=True)
        pools, self._pools = self._pools, None
        if pools is not None:
            # A handler still running past the timeout keeps its thread; its
            # result is dropped.
            pools[0].shutdown(wait=False, cancel_futures=True)
            pools[1].shutdown(wait=True)
        if self._owns_loop:
            self.loop.stop()

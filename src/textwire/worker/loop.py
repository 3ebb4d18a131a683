"""An event loop on a thread of its own: where ``async def`` handlers run.

The worker owns one, so a bot's async HTTP or model clients live on the same
loop from message to message; the TwiML reply mode uses the same one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["LoopThread"]

logger = logging.getLogger("textwire.worker")

T = TypeVar("T")


class LoopThread:
    """An asyncio loop running forever on a daemon thread, until ``stop()``."""

    def __init__(self, name: str = "textwire-loop") -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop, started on first use."""
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                ready = threading.Event()
                loop = asyncio.new_event_loop()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name=self.name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def submit(self, awaitable: Awaitable[T]) -> concurrent.futures.Future[T]:
        """Schedule ``awaitable`` on the loop; a future for its result."""
        return asyncio.run_coroutine_threadsafe(_wrap(awaitable), self.loop)

    def run(self, awaitable: Awaitable[T], timeout: float | None = None) -> T:
        """Run ``awaitable`` on the loop and wait for its result (from any
        other thread). On timeout the coroutine is cancelled and
        ``TimeoutError`` raised."""
        if self._thread is not None and threading.current_thread() is self._thread:
            raise RuntimeError("LoopThread.run called from its own loop")
        future = self.submit(awaitable)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError("the coroutine did not finish in time") from None
        except concurrent.futures.CancelledError:
            raise TimeoutError("the coroutine was cancelled") from None

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel what still runs on the loop, stop it and close it."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await loop.shutdown_asyncgens()

        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout)
        except Exception:  # a task that would not stop: stop anyway
            logger.warning("event loop tasks did not stop within %.0f s", timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()


async def _wrap(awaitable: Awaitable[T]) -> T:
    return await awaitable

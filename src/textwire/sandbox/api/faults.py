"""``Faults``: latency and failures the emulator's API can be told to add.

For tests and benchmarks of a client's retry logic: 500s and 429s that create
nothing, and creates that are accepted but answered only after a stall (the
ambiguous case).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Faults"]


@dataclass
class Faults:
    """Knobs that make the emulator slow or unreliable, for tests and benchmarks.

    Attributes:
        latency: seconds added to every API request (not to media bytes).
        error_500_rate: share of Messages create calls answered 500 (20500);
            nothing is created.
        error_429_rate: share answered 429 (20429) with ``Retry-After``;
            nothing is created.
        retry_after: the ``Retry-After`` header (seconds) of those 429s.
        stall_rate: share of valid creates that are accepted (the message
            exists and is delivered) but answered only after
            ``stall_seconds``, so the client times out: the ambiguous case.
        stall_seconds: how long a stalled answer waits; :meth:`release` (or
            stopping the carrier) ends the wait early.
        seed: seed of the random draw deciding which calls fail.
    """

    latency: float = 0.0
    error_500_rate: float = 0.0
    error_429_rate: float = 0.0
    retry_after: int = 1
    stall_rate: float = 0.0
    stall_seconds: float = 30.0
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False, compare=False)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )
    _released: threading.Event = field(
        default_factory=threading.Event, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for name in ("error_500_rate", "error_429_rate", "stall_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"Faults.{name} must be between 0 and 1, not {rate}")
        if self.error_500_rate + self.error_429_rate + self.stall_rate > 1.0:
            raise ValueError("the Faults rates add up to more than 1")
        if self.latency < 0 or self.stall_seconds < 0 or self.retry_after < 0:
            raise ValueError(
                "Faults latency, stall_seconds and retry_after must be >= 0"
            )
        self._rng = random.Random(self.seed)

    def draw(self) -> str | None:
        """The fault for one create call: ``"500"``, ``"429"``, ``"stall"`` or None.

        One random number per call, so the rates are exact shares.
        """
        if not (self.error_500_rate or self.error_429_rate or self.stall_rate):
            return None
        with self._lock:
            roll = self._rng.random()
        if roll < self.error_500_rate:
            return "500"
        roll -= self.error_500_rate
        if roll < self.error_429_rate:
            return "429"
        roll -= self.error_429_rate
        return "stall" if roll < self.stall_rate else None

    def release(self) -> None:
        """End every stall in progress now (later stalls wait again)."""
        with self._lock:
            released, self._released = self._released, threading.Event()
        released.set()

    def stall(self, stopping: Callable[[], bool]) -> None:
        """Wait ``stall_seconds``, or until :meth:`release` or ``stopping()``."""
        with self._lock:
            released = self._released
        deadline = time.monotonic() + self.stall_seconds
        while not stopping():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or released.wait(min(remaining, 0.05)):
                return

"""Exponential backoff with jitter."""

from __future__ import annotations

import random

__all__ = ["compute_backoff"]


def compute_backoff(
    attempt: int,
    *,
    base: float = 2.0,
    cap: float = 300.0,
    jitter: bool = True,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before attempt ``attempt + 1``.

    ``base * 2 ** (attempt - 1)``, at most ``cap``; with jitter, a uniform
    draw from the upper half of that, so retries from many workers spread out
    but never come sooner than half the nominal delay.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    delay = min(cap, base * 2.0 ** min(attempt - 1, 32))
    if not jitter:
        return delay
    draw: float = (rng or random).uniform(delay / 2, delay)
    return draw

"""Handing a contact to a person, and back to the bot.

A handler calls ``ctx.handoff(note=...)`` (or an operator presses *Hand to a
person* in the console): from the next message on, the bot stays silent for
that contact, whose messages wait in the console for a person. The
operator's *Back to the bot*, or ``TEXTWIRE_HANDOFF_TIMEOUT`` seconds without
a person's reply, hands them back. STOP and START still apply meanwhile (the
opt-out middleware runs first).

Plain Python: the middleware, the worker and the console all decide here.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

__all__ = ["HandoffChange", "HandoffState"]


@dataclasses.dataclass(frozen=True, slots=True)
class HandoffState:
    """A contact who is with a person.

    Attributes:
        since: when they were handed off.
        active_at: the last sign of a person: the handoff, or an operator's
            latest reply; the timeout runs from here.
        note: why (the handler's or the operator's note).
        by: who handed them off: ``"bot"`` or an operator's name.
    """

    since: datetime
    active_at: datetime
    note: str = ""
    by: str = "bot"

    def expired(self, now: datetime, timeout: float) -> bool:
        """Whether ``timeout`` seconds (0: never) passed since ``active_at``.

        >>> from datetime import UTC
        >>> at = datetime(2026, 1, 1, tzinfo=UTC)
        >>> HandoffState(at, at).expired(at + timedelta(hours=2), 3600)
        True
        """
        return timeout > 0 and now >= self.active_at + timedelta(seconds=timeout)


@dataclasses.dataclass(frozen=True, slots=True)
class HandoffChange:
    """Hand the contact to a person (``active``) or back to the bot, committed
    with the rest of a message's effects (or by the console at once).

    Attributes:
        active: ``True`` hands them to a person, ``False`` back to the bot.
        note: why, shown in the console.
        by: ``"bot"``, an operator's name, or ``"timeout"``.
    """

    active: bool
    note: str = ""
    by: str = "bot"

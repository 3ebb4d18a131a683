"""Per-contact conversation state, with optional expiry.

A conversation is keyed by ``(bot number, contact number)``, both E.164. State
is a name (or ``None``) plus a small JSON-able ``data`` dict. Handlers use it
through ``ctx.state``::

    class Signup(States):
        name = State()
        zip_code = State()

    @router.message(F.keyword("join"))
    def join(msg, ctx):
        ctx.state.set(Signup.name, ttl=timedelta(hours=1))
        return "What's your first name?"

    @router.message(Signup.name)
    def got_name(msg, ctx):
        ctx.state.update(name=msg.text)
        ctx.state.set(Signup.zip_code)
        ...
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from textwire.filters import Filter, FilterContext

if TYPE_CHECKING:
    from textwire.messages import Inbound

__all__ = [
    "BufferedStateStore",
    "ConversationKey",
    "ConversationState",
    "MemoryStateStore",
    "State",
    "StateRecord",
    "StateStore",
    "States",
    "apply_state_changes",
]


@dataclasses.dataclass(frozen=True, slots=True)
class ConversationKey:
    """Whose conversation: the bot's number and the contact's, both E.164."""

    bot_number: str
    contact: str


@dataclasses.dataclass(frozen=True, slots=True)
class StateRecord:
    state: str | None
    data: Mapping[str, Any]
    expires_at: datetime | None


class StateStore(Protocol):
    """Where conversation state lives; ``SqlStateStore`` and ``MemoryStateStore``."""

    def load(self, key: ConversationKey) -> StateRecord | None: ...

    def save(self, key: ConversationKey, record: StateRecord) -> None: ...

    def delete(self, key: ConversationKey) -> None: ...


class MemoryStateStore:
    """A ``StateStore`` in a dict: for unit tests and ``BotTester``."""

    def __init__(self) -> None:
        self._records: dict[ConversationKey, StateRecord] = {}
        self._lock = threading.Lock()

    def load(self, key: ConversationKey) -> StateRecord | None:
        with self._lock:
            return self._records.get(key)

    def save(self, key: ConversationKey, record: StateRecord) -> None:
        with self._lock:
            self._records[key] = record

    def delete(self, key: ConversationKey) -> None:
        with self._lock:
            self._records.pop(key, None)


class BufferedStateStore:
    """Reads through to another store and keeps the writes, to commit later.

    A handler runs outside any database transaction; what it does to its
    conversation's state is kept here and written (``apply``) together with
    its replies, or not at all.
    """

    def __init__(self, base: StateStore) -> None:
        self._base = base
        self.changes: dict[ConversationKey, StateRecord | None] = {}

    def load(self, key: ConversationKey) -> StateRecord | None:
        if key in self.changes:
            return self.changes[key]
        return self._base.load(key)

    def save(self, key: ConversationKey, record: StateRecord) -> None:
        self.changes[key] = record

    def delete(self, key: ConversationKey) -> None:
        self.changes[key] = None


def apply_state_changes(
    store: StateStore, changes: Mapping[ConversationKey, StateRecord | None]
) -> None:
    """Write what a handler did to conversation state into ``store``."""
    for key, record in changes.items():
        if record is None:
            store.delete(key)
        else:
            store.save(key, record)


class State(Filter):
    """One named step of a conversation; declare them on a ``States`` class.

    A ``State`` is a filter: ``@router.message(Signup.name)`` matches contacts
    whose conversation is in that state.
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name or ""

    def __set_name__(self, owner: type, attr: str) -> None:
        if not self.name:
            self.name = f"{owner.__name__}.{attr}"

    def check(self, msg: Inbound, ctx: FilterContext) -> bool:
        return ctx.state.get() == self.name

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"State({self.name!r})"


class States:
    """Base class grouping the ``State`` s of one conversation."""


class ConversationState:
    """The state of one conversation during one dispatch.

    Reads are cached for the dispatch; writes go to the store at once (during
    handling, a :class:`BufferedStateStore` that keeps them until the replies
    are committed with them).
    """

    def __init__(
        self,
        store: StateStore,
        key: ConversationKey,
        *,
        now: datetime,
        default_ttl: timedelta | None = None,
    ) -> None:
        self._store = store
        self.key = key
        self._now = now
        self._default_ttl = default_ttl
        self._record: StateRecord | None = None
        self._loaded = False

    def _current(self) -> StateRecord | None:
        if not self._loaded:
            record = self._store.load(self.key)
            expires_at = record.expires_at if record is not None else None
            if expires_at is not None and expires_at <= self._now:
                record = None
            self._record = record
            self._loaded = True
        return self._record

    def get(self) -> str | None:
        """The current state's name, or ``None`` (no state, or it expired)."""
        record = self._current()
        return record.state if record else None

    @property
    def data(self) -> dict[str, Any]:
        """A copy of the conversation's data; change it with ``update``."""
        record = self._current()
        return dict(record.data) if record else {}

    def set(self, state: State | str | None, *, ttl: timedelta | None = None) -> None:
        """Move the conversation to ``state``, keeping its data.

        Args:
            state: a ``State``, a name, or ``None`` for no state.
            ttl: forget the conversation after this long without a new ``set``;
                defaults to the bot's ``conversation_timeout``.
        """
        name = state.name if isinstance(state, State) else state
        self._write(name, self.data, ttl)

    def update(self, **values: Any) -> None:
        """Merge ``values`` into the conversation's data, keeping its state."""
        data = self.data
        data.update(values)
        self._write(self.get(), data, None)

    def clear(self) -> None:
        """Forget the state and the data."""
        self._store.delete(self.key)
        self._record = None
        self._loaded = True

    def _write(
        self, state: str | None, data: dict[str, Any], ttl: timedelta | None
    ) -> None:
        ttl = ttl if ttl is not None else self._default_ttl
        expires_at = self._now + ttl if ttl is not None else None
        record = StateRecord(state=state, data=data, expires_at=expires_at)
        self._store.save(self.key, record)
        self._record = record
        self._loaded = True

"""Composable predicates that decide which handler gets an inbound message.

Filters combine with ``&``, ``|`` and ``~``::

    from textwire import filters as F

    @router.message(F.keyword("help", "info"))
    @router.message(F.regex(r"^order (\\d+)$") & ~F.has_media)
    @router.message(F.has_media)
    @router.message(Signup.name)          # a State is a filter too
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from textwire.messages import Inbound

__all__ = [
    "Filter",
    "FilterContext",
    "any_message",
    "from_",
    "has_media",
    "keyword",
    "regex",
    "state",
    "text",
]


class _StateView(Protocol):
    def get(self) -> str | None: ...


class FilterContext(Protocol):
    """What a filter may look at besides the message: a handler's ``Context``.

    A protocol, so filters depend on no other module of the bot's (the
    ``Context`` that satisfies it imports the conversation state, which
    imports filters for ``State``).
    """

    @property
    def state(self) -> _StateView: ...

    match: re.Match[str] | None


# Filters are checked with a handler's Context; the name keeps their
# signatures readable.
Context = FilterContext


class Filter:
    """A predicate over ``(message, context)``; subclass and implement ``check``."""

    def check(self, msg: Inbound, ctx: Context) -> bool:
        raise NotImplementedError  # pragma: no cover

    def __call__(self, msg: Inbound, ctx: Context) -> bool:
        return self.check(msg, ctx)

    def __and__(self, other: Filter) -> Filter:
        return _All(self, other)

    def __or__(self, other: Filter) -> Filter:
        return _Any(self, other)

    def __invert__(self) -> Filter:
        return _Not(self)


class _All(Filter):
    def __init__(self, *parts: Filter) -> None:
        self.parts = parts

    def check(self, msg: Inbound, ctx: Context) -> bool:
        return all(part.check(msg, ctx) for part in self.parts)

    def __repr__(self) -> str:
        return " & ".join(map(repr, self.parts))


class _Any(Filter):
    def __init__(self, *parts: Filter) -> None:
        self.parts = parts

    def check(self, msg: Inbound, ctx: Context) -> bool:
        return any(part.check(msg, ctx) for part in self.parts)

    def __repr__(self) -> str:
        return "(" + " | ".join(map(repr, self.parts)) + ")"


class _Not(Filter):
    def __init__(self, inner: Filter) -> None:
        self.inner = inner

    def check(self, msg: Inbound, ctx: Context) -> bool:
        return not self.inner.check(msg, ctx)

    def __repr__(self) -> str:
        return f"~{self.inner!r}"


class _Predicate(Filter):
    def __init__(self, name: str, func: Callable[[Inbound, Context], bool]) -> None:
        self.name = name
        self.func = func

    def check(self, msg: Inbound, ctx: Context) -> bool:
        return self.func(msg, ctx)

    def __repr__(self) -> str:
        return self.name


class _Keyword(Filter):
    def __init__(self, words: tuple[str, ...]) -> None:
        if not words or not all(isinstance(w, str) and w.strip() for w in words):
            raise ValueError("keyword() needs at least one non-empty word")
        self.words = frozenset(_fold(w) for w in words)

    def check(self, msg: Inbound, ctx: Context) -> bool:
        return _fold(msg.body) in self.words

    def __repr__(self) -> str:
        return f"keyword({', '.join(sorted(self.words))})"


class _Regex(Filter):
    def __init__(self, pattern: str | re.Pattern[str], flags: int) -> None:
        self.pattern = (
            pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, flags)
        )

    def check(self, msg: Inbound, ctx: Context) -> bool:
        match = self.pattern.search(msg.body.strip())
        if match is None:
            return False
        ctx.match = match
        return True

    def __repr__(self) -> str:
        return f"regex({self.pattern.pattern!r})"


class _State(Filter):
    def __init__(self, name: str | None) -> None:
        self.name = name

    def check(self, msg: Inbound, ctx: Context) -> bool:
        return ctx.state.get() == self.name

    def __repr__(self) -> str:
        return f"state({self.name!r})"


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def keyword(*words: str) -> Filter:
    """The whole message is one of ``words``: any case, surrounding spaces ignored.

    ``keyword("help")`` matches "help", " HELP ", "Help" but not "help me".
    """
    return _Keyword(words)


def regex(pattern: str | re.Pattern[str], flags: int = re.IGNORECASE) -> Filter:
    """The stripped body matches ``pattern`` (``re.search``); sets ``ctx.match``."""
    return _Regex(pattern, flags)


def state(name: str | None) -> Filter:
    """The contact's conversation is in state ``name`` (``None``: in no state)."""
    return _State(name)


def from_(*numbers: str) -> Filter:
    """The sender is one of ``numbers`` (any format; normalized once, here)."""
    from textwire.phone import normalize_sender

    wanted = frozenset(normalize_sender(n) for n in numbers)
    return _Predicate(
        f"from_({len(wanted)} numbers)", lambda msg, ctx: msg.from_ in wanted
    )


text: Filter = _Predicate("text", lambda msg, ctx: bool(msg.body.strip()))
"""The message has some text."""

has_media: Filter = _Predicate("has_media", lambda msg, ctx: bool(msg.media))
"""The message carries at least one picture or other media."""

any_message: Filter = _Predicate("any_message", lambda msg, ctx: True)
"""Every message."""

"""Routers: where handlers are registered, in the order they are tried."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeAlias, TypeVar

from textwire import filters as F
from textwire.errors import RegistrationError

if TYPE_CHECKING:
    from textwire.context import Context
    from textwire.messages import Inbound, Reply

__all__ = ["Handler", "HandlerResult", "Route", "Router"]

HandlerResult: TypeAlias = "str | Reply | Sequence[str | Reply] | None"
Handler: TypeAlias = (
    "Callable[[Inbound, Context], HandlerResult | Awaitable[HandlerResult]]"
)
FilterLike: TypeAlias = "F.Filter | str | re.Pattern[str]"

H = TypeVar("H", bound=Callable[..., object])


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """One registered handler and the filter that selects it."""

    handler: Handler
    filter: F.Filter
    fallback: bool = False

    @property
    def name(self) -> str:
        return getattr(self.handler, "__qualname__", repr(self.handler))


def _as_filter(item: FilterLike) -> F.Filter:
    if isinstance(item, F.Filter):
        return item
    if isinstance(item, str):
        return F.keyword(item)
    if isinstance(item, re.Pattern):
        return F.regex(item)
    raise RegistrationError(
        f"{item!r} is not a filter: use textwire.filters, a keyword string "
        "or a compiled regex"
    )


class Router:
    """A group of handlers; include routers in a ``Bot`` to use them.

    Handlers are tried in registration order, routers in inclusion order, and
    the first whose filters all match handles the message. Fallback handlers
    run only when no other handler of any router matched::

        router = Router(name="orders")

        @router.message("status")                 # a str is a keyword
        def status(msg: Inbound, ctx: Context) -> str:
            return "All orders shipped."

        @router.message(F.regex(r"^track (\\w+)$"))
        def track(msg: Inbound, ctx: Context) -> str:
            return f"Tracking {ctx.match.group(1)}"

        @router.fallback()
        def menu(msg: Inbound, ctx: Context) -> str:
            return "Send STATUS or TRACK <id>."

    A handler returns ``str`` (one reply), ``Reply`` (text + images as one
    message), a list of those (several messages, sent in order), or ``None``
    (no reply, or only what it passed to ``ctx.reply``). It may be an
    ``async def``: the worker awaits it on its own event loop. ``router.message(...)``
    returns the function unchanged, so handlers stay plain functions to test.
    """

    def __init__(self, name: str = "default") -> None:
        self.name = name
        self.routes: list[Route] = []
        self._frozen = False

    def message(self, *filters: FilterLike) -> Callable[[H], H]:
        """Register a handler for messages matching every one of ``filters``.

        With no filter it matches every message (put it last).
        """
        combined = _combine(filters)

        def register(handler: H) -> H:
            self._add(Route(handler, combined))  # type: ignore[arg-type]
            return handler

        return register

    def fallback(self, *filters: FilterLike) -> Callable[[H], H]:
        """Register a handler tried only after every non-fallback handler."""
        combined = _combine(filters)

        def register(handler: H) -> H:
            self._add(Route(handler, combined, fallback=True))  # type: ignore[arg-type]
            return handler

        return register

    def _add(self, route: Route) -> None:
        if self._frozen:
            raise RegistrationError(
                f"cannot register {route.name} on router {self.name!r}: the bot "
                "has started dispatching; finish setup before serving"
            )
        self.routes.append(route)

    def freeze(self) -> None:
        self._frozen = True


def _combine(filters: Sequence[FilterLike]) -> F.Filter:
    parts = [_as_filter(f) for f in filters]
    if not parts:
        return F.any_message
    if len(parts) == 1:
        return parts[0]
    combined = parts[0]
    for part in parts[1:]:
        combined = combined & part
    return combined

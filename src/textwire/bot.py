"""The Bot facade: routers, error hooks, and dispatch of one inbound message."""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeAlias

from textwire import middleware as builtin
from textwire.context import AsyncRunner, Context, HandleOptions, Scheduled
from textwire.conversation import (
    BufferedStateStore,
    ConversationKey,
    ConversationState,
    StateRecord,
    StateStore,
)
from textwire.errors import InvalidMessage, RegistrationError, StorageError
from textwire.handoff import HandoffChange, HandoffState
from textwire.messages import Inbound, Reply
from textwire.middleware import Middleware, Next
from textwire.routing import HandlerResult, Route, Router

__all__ = ["Bot", "ErrorHook", "Outcome", "to_replies"]

ErrorHook: TypeAlias = Callable[
    [BaseException, Inbound, Context], "HandlerResult | Awaitable[HandlerResult]"
]


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What handling one message came to, for the caller to commit at once.

    Attributes:
        replies: the messages to send the contact, in order, after every
            middleware (the MMS policy applied).
        state_changes: the conversation state to write (``None``: delete),
            by conversation.
        opt_out: ``True`` to opt the contact out, ``False`` back in, ``None``
            to leave it.
        keyword: the opt-out keyword the message was (``stop``, ``start``).
        route: the handler that ran, if any.
        failed: a handler or middleware raised; ``replies`` is what the error
            hooks or the apology gave.
        timed_out: the handler ran past its time; ``replies`` is the apology.
        handoff: hand the contact to a person (``ctx.handoff()``) or back to
            the bot (the handoff timed out); ``None`` leaves it.
        scheduled: messages to the contact for later (``ctx.schedule``); none
            when handling failed.
    """

    replies: tuple[Reply, ...] = ()
    state_changes: Mapping[ConversationKey, StateRecord | None] = dataclasses.field(
        default_factory=dict
    )
    opt_out: bool | None = None
    keyword: str | None = None
    route: str | None = None
    failed: bool = False
    timed_out: bool = False
    handoff: HandoffChange | None = None
    scheduled: tuple[Scheduled, ...] = ()


class Bot:
    """An SMS/MMS bot: handlers on routers, middleware around them, and what to
    do when one fails.

    Example::

        bot = Bot(name="shop")

        @bot.message("hours")
        def hours(msg: Inbound, ctx: Context) -> str:
            return "Open 9-5, Monday to Friday."

        @bot.message(F.keyword("help"))
        def help_(msg: Inbound, ctx: Context) -> Reply:
            return Reply("Here's how to reach us:", media=[ctx.media_url("map.png")])

        @bot.message(F.keyword("weather"))
        async def weather(msg: Inbound, ctx: Context) -> str:
            forecast = await client.get_forecast()   # awaited on the worker's loop
            return forecast.summary

        bot.include_router(orders.router)   # tried after the bot's own handlers
        bot.use(timing)                     # middleware (textwire.middleware)

        @bot.error
        def on_error(exc: BaseException, msg: Inbound, ctx: Context) -> str | None:
            return "Our order system is down; we'll text you back."

    Handlers run in textwire's worker, outside any database transaction, and
    at least once: a worker that dies mid-handler leaves the message to
    another, which runs the handler again. What a handler does through
    ``ctx`` (replies, conversation state, opt-out) is committed exactly once;
    use ``msg.sid`` as the idempotency key of its own side effects.

    Args:
        name: used in logs (logger ``textwire.bot.<name>``).
        apology: what the sender gets when a handler raises; ``None`` uses the
            settings' ``TEXTWIRE_APOLOGY``, ``""`` sends nothing.
        conversation_timeout: forget a conversation's state after this long.
        media_folder: files served at ``/media/<path>`` for the bot's own images.
        handle_opt_out: honour STOP/START keywords before any handler runs
            (the :func:`textwire.middleware.opt_out` middleware); turn it off
            when a Messaging Service's Advanced Opt-Out handles them and the
            bot should see every message.
    """

    def __init__(
        self,
        name: str = "bot",
        *,
        apology: str | None = None,
        conversation_timeout: timedelta | None = None,
        media_folder: str | Path | None = None,
        handle_opt_out: bool = True,
    ) -> None:
        self.name = name
        self.handle_opt_out = handle_opt_out
        self.apology = apology
        self.conversation_timeout = conversation_timeout
        # Resolved now: a relative folder means "from where the bot starts".
        self.media_folder = Path(media_folder).resolve() if media_folder else None
        self.logger = logging.getLogger(f"textwire.bot.{name}")
        self.router = Router(name=name)
        self.routers: list[Router] = [self.router]
        self.error_hooks: list[ErrorHook] = []
        self._middleware: list[Middleware] = [
            func
            for label, func in builtin.BUILT_IN
            if handle_opt_out or label != "opt_out"
        ]
        self._frozen = False
        self.message = self.router.message
        self.fallback = self.router.fallback

    # -- setup -------------------------------------------------------------

    def include_router(self, router: Router) -> Router:
        """Add a router; routers are tried in the order they were included."""
        self._check_setup("include_router")
        if any(r is router for r in self.routers):
            raise RegistrationError(f"router {router.name!r} is already included")
        self.routers.append(router)
        return router

    def use(self, middleware: Middleware) -> Middleware:
        """Add a middleware around the handlers (inside the built-in ones).

        Middleware run in the order they were added, each around the next:
        ``middleware(msg, ctx, next)``; see :mod:`textwire.middleware`. Usable
        as a decorator.

        Raises:
            RegistrationError: after the bot started handling messages, or
                for something that is not a plain function of three arguments.
        """
        self._check_setup("use")
        if not callable(middleware):
            raise RegistrationError(
                f"middleware must be callable, not {type(middleware).__name__}"
            )
        if inspect.iscoroutinefunction(middleware):
            raise RegistrationError(
                "middleware must be a plain function (it runs in the worker's "
                "handler threads); await slow work in an async def handler"
            )
        self._middleware.append(middleware)
        return middleware

    @property
    def middleware(self) -> tuple[Middleware, ...]:
        """The chain around the handlers, outermost first (built-ins included)."""
        return tuple(self._middleware)

    def error(self, hook: ErrorHook) -> ErrorHook:
        """Register a hook called with ``(exc, msg, ctx)`` when a handler raises.

        Its return value (``str``, ``Reply``, list or ``None``) replaces the
        apology; a hook returning ``None`` keeps it. A hook that raises is
        logged and ignored. A hook may be ``async def``.
        """
        self._check_setup("error")
        self.error_hooks.append(hook)
        return hook

    def _check_setup(self, what: str) -> None:
        if self._frozen:
            raise RegistrationError(
                f"cannot call {what}() on bot {self.name!r}: it has started "
                "dispatching; finish setup before serving"
            )

    def freeze(self) -> None:
        """End setup: further registration raises ``RegistrationError``."""
        if not self._frozen:
            self._frozen = True
            for router in self.routers:
                router.freeze()

    # -- handling ----------------------------------------------------------

    def find_route(self, msg: Inbound, ctx: Context) -> Route | None:
        """The first route whose filter matches: regular routes, then fallbacks."""
        for fallback in (False, True):
            for router in self.routers:
                for route in router.routes:
                    if route.fallback is fallback and route.filter.check(msg, ctx):
                        return route
        return None

    def handle(
        self,
        msg: Inbound,
        *,
        state_store: StateStore,
        opted_out: bool = False,
        now: datetime | None = None,
        options: HandleOptions | None = None,
        run_async: AsyncRunner | None = None,
        handoff: HandoffState | None = None,
    ) -> Outcome:
        """Run the middleware chain and the matching handler for ``msg``.

        The one entry point: the worker, the TwiML reply mode and
        ``textwire.testing.BotTester`` all call it, so a test sees what
        production does. It writes nothing: conversation state is read from
        ``state_store`` and its changes come back in the :class:`Outcome`,
        for the caller to commit with the replies.

        Never raises because of a handler or a middleware: the exception is
        logged with its traceback, passed to the error hooks, and answered
        with the apology. A ``StorageError`` (textwire's own database failing,
        e.g. reading the conversation state) propagates: the message is
        handled again later.

        Args:
            msg: the message.
            state_store: where conversation state is read from.
            opted_out: whether the contact had opted out when it arrived.
            now: the time to handle it at (state expiry); now when omitted.
            options: public URL, apology and media policy.
            run_async: runs an ``async def`` handler's coroutine.
            handoff: the contact's handoff to a person, if they are with one.
        """
        self.freeze()
        now = now or datetime.now(UTC)
        options = options or HandleOptions()
        buffered = BufferedStateStore(state_store)
        key = ConversationKey(bot_number=msg.to, contact=msg.from_)
        state = ConversationState(
            buffered, key, now=now, default_ttl=self.conversation_timeout
        )
        ctx = Context(
            msg,
            bot=self,
            state=state,
            options=options,
            opted_out=opted_out,
            now=now,
            run_async=run_async,
            handoff=handoff,
        )
        route: list[Route] = []
        failed = False
        try:
            replies = self._run_chain(0, msg, ctx, route)
        except StorageError:
            raise
        except Exception as exc:
            failed = True
            self.logger.exception("middleware failed on message %s: %s", msg.sid, exc)
            replies = self._handle_error(exc, msg, ctx)
        return Outcome(
            replies=tuple(replies),
            state_changes=buffered.changes,
            opt_out=ctx.opt_out_change,
            keyword=ctx.keyword,
            route=route[0].name if route else None,
            failed=failed or ctx.failed,
            handoff=ctx.handoff_change,
            # A handler that raised leaves nothing for later either.
            scheduled=() if failed or ctx.failed else tuple(ctx.scheduled),
        )

    def apology_for(self, options: HandleOptions | None = None) -> list[Reply]:
        """What a sender gets when handling failed and no error hook answered."""
        default = (options or HandleOptions()).apology
        apology = self.apology if self.apology is not None else default
        return [Reply(apology)] if apology.strip() else []

    def _run_chain(
        self, index: int, msg: Inbound, ctx: Context, route: list[Route]
    ) -> list[Reply]:
        if index == len(self._middleware):
            return self._dispatch(msg, ctx, route)
        called: list[list[Reply]] = []

        def next_() -> list[Reply]:
            if called:
                raise RuntimeError("a middleware called next() twice")
            called.append(self._run_chain(index + 1, msg, ctx, route))
            return called[0]

        nxt: Next = next_
        result = self._middleware[index](msg, ctx, nxt)
        if result is None:
            return called[0] if called else []
        return to_replies(result)

    def _dispatch(self, msg: Inbound, ctx: Context, found: list[Route]) -> list[Reply]:
        route: Route | None = None
        try:
            route = self.find_route(msg, ctx)
            if route is None:
                self.logger.info("no handler matched message %s", msg.sid)
                return []
            found.append(route)
            result: Any = route.handler(msg, ctx)
            if inspect.isawaitable(result):
                result = ctx.run_async(result)
            return [*ctx.replies, *to_replies(result)]
        except StorageError:
            raise  # textwire's own database, not the handler: retried later
        except Exception as exc:
            where = route.name if route else "filters"
            self.logger.exception(
                "handler %s failed on message %s: %s", where, msg.sid, exc
            )
            ctx.failed = True
            return self._handle_error(exc, msg, ctx)

    def _handle_error(self, exc: Exception, msg: Inbound, ctx: Context) -> list[Reply]:
        for hook in self.error_hooks:
            try:
                result: Any = hook(exc, msg, ctx)
                if inspect.isawaitable(result):
                    result = ctx.run_async(result)
                replies = to_replies(result)
            except Exception:
                self.logger.exception("error hook %r failed", hook)
                continue
            if replies:
                return replies
        return self.apology_for(ctx.options)


def to_replies(result: HandlerResult) -> list[Reply]:
    """Turn what a handler returned into replies; raises on anything else."""
    if result is None:
        return []
    if isinstance(result, str):
        return [Reply(result)]
    if isinstance(result, Reply):
        return [result]
    if isinstance(result, Sequence):
        return [item for part in result for item in to_replies(part)]
    raise InvalidMessage(
        f"a handler returned {type(result).__name__}; return str, Reply, "
        "a list of them, or None"
    )

"""The Bot facade: routers, error hooks, and dispatch of one inbound message."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeAlias

from textwire.config import DEFAULT_APOLOGY
from textwire.context import Context
from textwire.conversation import ConversationKey, ConversationState, StateStore
from textwire.errors import InvalidMessage, RegistrationError
from textwire.messages import Inbound, Reply
from textwire.routing import HandlerResult, Route, Router

__all__ = ["Bot", "ErrorHook"]

ErrorHook: TypeAlias = Callable[[BaseException, Inbound, Context], HandlerResult]


class Bot:
    """An SMS/MMS bot: handlers on routers, plus what to do when one fails.

    Example::

        bot = Bot(name="shop")

        @bot.message("hours")
        def hours(msg: Inbound, ctx: Context) -> str:
            return "Open 9-5, Monday to Friday."

        @bot.message(F.keyword("help"))
        def help_(msg: Inbound, ctx: Context) -> Reply:
            return Reply("Here's how to reach us:", media=[ctx.media_url("map.png")])

        bot.include_router(orders.router)   # tried after the bot's own handlers

        @bot.error
        def on_error(exc: BaseException, msg: Inbound, ctx: Context) -> str | None:
            return "Our order system is down; we'll text you back."

    Args:
        name: used in logs (logger ``textwire.bot.<name>``).
        apology: what the sender gets when a handler raises; ``None`` uses the
            settings' ``TEXTWIRE_APOLOGY``, ``""`` sends nothing.
        conversation_timeout: forget a conversation's state after this long.
        media_folder: files served at ``/media/<path>`` for the bot's own images.
        handle_opt_out: honour STOP/START keywords before any handler runs
            (``textwire.optout``); turn it off when a Messaging Service's
            Advanced Opt-Out handles them and the bot should see every message.
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

    def error(self, hook: ErrorHook) -> ErrorHook:
        """Register a hook called with ``(exc, msg, ctx)`` when a handler raises.

        Its return value (``str``, ``Reply``, list or ``None``) replaces the
        apology; a hook returning ``None`` keeps it. A hook that raises is
        logged and ignored.
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

    # -- dispatch ----------------------------------------------------------

    def find_route(self, msg: Inbound, ctx: Context) -> Route | None:
        """The first route whose filter matches: regular routes, then fallbacks."""
        for fallback in (False, True):
            for router in self.routers:
                for route in router.routes:
                    if route.fallback is fallback and route.filter.check(msg, ctx):
                        return route
        return None

    def dispatch(
        self,
        msg: Inbound,
        *,
        state_store: StateStore,
        now: datetime | None = None,
        public_url: str | None = None,
        default_apology: str = DEFAULT_APOLOGY,
        check_reply: Callable[[Reply], None] | None = None,
    ) -> list[Reply]:
        """Run the matching handler for ``msg`` and return its replies, in order.

        Never raises because of a handler: its exception is logged with its
        traceback, passed to the error hooks, and answered with the apology.
        ``check_reply`` may refuse a reply (raise) as if the handler had raised.
        """
        self.freeze()
        now = now or datetime.now(UTC)
        key = ConversationKey(bot_number=msg.to, contact=msg.from_)
        state = ConversationState(
            state_store, key, now=now, default_ttl=self.conversation_timeout
        )
        ctx = Context(msg, bot=self, state=state, public_url=public_url)
        route: Route | None = None
        try:
            route = self.find_route(msg, ctx)
            if route is None:
                self.logger.info("no handler matched message %s", msg.sid)
                return []
            result = route.handler(msg, ctx)
            replies = [*ctx.replies, *to_replies(result)]
            if check_reply is not None:
                for reply in replies:
                    check_reply(reply)
            return replies
        except Exception as exc:
            where = route.name if route else "filters"
            self.logger.exception(
                "handler %s failed on message %s: %s", where, msg.sid, exc
            )
            return self._handle_error(exc, msg, ctx, default_apology)

    def _handle_error(
        self, exc: Exception, msg: Inbound, ctx: Context, default_apology: str
    ) -> list[Reply]:
        for hook in self.error_hooks:
            try:
                replies = to_replies(hook(exc, msg, ctx))
            except Exception:
                self.logger.exception("error hook %r failed", hook)
                continue
            if replies:
                return replies
        apology = self.apology if self.apology is not None else default_apology
        return [Reply(apology)] if apology.strip() else []


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

"""The bot core: routing, filters, replies, errors, state — no Flask, no database."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

import pytest

from textwire import Bot, Context, Inbound, Reply, Router, State, States
from textwire import filters as F
from textwire.context import HandleOptions
from textwire.conversation import MemoryStateStore, apply_state_changes
from textwire.errors import RegistrationError

from .conftest import make_form

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def inbound(body: str = "hello", **overrides: str) -> Inbound:
    return Inbound.from_form(make_form(body, **overrides))


def bodies(replies: list[Reply]) -> list[str]:
    return [r.body for r in replies]


def run(
    bot: Bot,
    msg: Inbound,
    store: MemoryStateStore | None = None,
    *,
    now: datetime = NOW,
    apology: str | None = None,
) -> list[Reply]:
    """``bot.handle`` as the worker calls it, its state changes committed."""
    store = store if store is not None else MemoryStateStore()
    options = HandleOptions(public_url="https://bot.example.com")
    if apology is not None:
        options = HandleOptions(public_url="https://bot.example.com", apology=apology)
    outcome = bot.handle(msg, state_store=store, now=now, options=options)
    apply_state_changes(store, outcome.state_changes)
    return list(outcome.replies)


def test_first_match_wins_in_registration_then_inclusion_order() -> None:
    bot = Bot()
    other = Router(name="other")

    @bot.message(F.keyword("hi"))
    def first(msg: Inbound, ctx: Context) -> str:
        return "first"

    @bot.message(F.regex(r"^h"))
    def second(msg: Inbound, ctx: Context) -> str:
        return "second"

    @other.message(F.text)
    def third(msg: Inbound, ctx: Context) -> str:
        return "third"

    bot.include_router(other)
    assert bodies(run(bot, inbound("hi"))) == ["first"]
    assert bodies(run(bot, inbound("hello"))) == ["second"]
    assert bodies(run(bot, inbound("yo"))) == ["third"]


def test_keyword_matches_whole_message_any_case_and_spacing() -> None:
    bot = Bot()

    @bot.message("help")  # a str is a keyword
    def helped(msg: Inbound, ctx: Context) -> str:
        return "help!"

    for text in ["help", "HELP", "  Help \n", "hElP"]:
        assert bodies(run(bot, inbound(text))) == ["help!"], text
    for text in ["help me", "helpful", "", "he lp"]:
        assert run(bot, inbound(text)) == [], text


def test_regex_sets_ctx_match_and_accepts_compiled_patterns() -> None:
    bot = Bot()

    @bot.message(re.compile(r"^order (\d+)$"))
    def order(msg: Inbound, ctx: Context) -> str:
        assert ctx.match is not None
        return f"order {ctx.match.group(1)}"

    assert bodies(run(bot, inbound(" order 42 "))) == ["order 42"]
    assert run(bot, inbound("order x")) == []


def test_has_media_and_combinators() -> None:
    bot = Bot()

    @bot.message(F.has_media & ~F.text)
    def picture_only(msg: Inbound, ctx: Context) -> str:
        return "picture only"

    @bot.message(F.has_media | F.keyword("pic"))
    def picture_or_word(msg: Inbound, ctx: Context) -> str:
        return "picture or word"

    media = {"NumMedia": "1", "MediaUrl0": "https://x.example/a.jpg"}
    assert bodies(run(bot, inbound("", **media))) == ["picture only"]
    assert bodies(run(bot, inbound("look", **media))) == ["picture or word"]
    assert bodies(run(bot, inbound("pic"))) == ["picture or word"]
    assert run(bot, inbound("nothing")) == []


def test_fallback_runs_only_when_nothing_else_matches_in_any_router() -> None:
    bot = Bot()
    late = Router(name="late")

    @bot.fallback()
    def menu(msg: Inbound, ctx: Context) -> str:
        return "menu"

    @late.message("hours")
    def hours(msg: Inbound, ctx: Context) -> str:
        return "9-5"

    bot.include_router(late)
    assert bodies(run(bot, inbound("hours"))) == ["9-5"]
    assert bodies(run(bot, inbound("what"))) == ["menu"]


def test_return_types_and_ctx_reply_keep_order() -> None:
    bot = Bot()

    @bot.message("str")
    def as_str(msg: Inbound, ctx: Context) -> str:
        return "one"

    @bot.message("reply")
    def as_reply(msg: Inbound, ctx: Context) -> Reply:
        return Reply(
            "pic", media=["https://x.example/a.png", "https://x.example/b.png"]
        )

    @bot.message("list")
    def as_list(msg: Inbound, ctx: Context) -> list[str | Reply]:
        return ["a", Reply("b"), "c"]

    @bot.message("none")
    def as_none(msg: Inbound, ctx: Context) -> None:
        return None

    @bot.message("mixed")
    def mixed(msg: Inbound, ctx: Context) -> str:
        ctx.reply("first")
        ctx.reply("second", media="https://x.example/c.png")
        return "third"

    assert bodies(run(bot, inbound("str"))) == ["one"]
    (reply,) = run(bot, inbound("reply"))
    assert reply.media == ("https://x.example/a.png", "https://x.example/b.png")
    assert bodies(run(bot, inbound("list"))) == ["a", "b", "c"]
    assert run(bot, inbound("none")) == []
    replies = run(bot, inbound("mixed"))
    assert bodies(replies) == ["first", "second", "third"]
    assert replies[1].media == ("https://x.example/c.png",)


def test_handler_exception_is_logged_and_answered_with_apology(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = Bot(name="crashy")

    @bot.message()
    def boom(msg: Inbound, ctx: Context) -> str:
        raise KeyError("secret internals")

    with caplog.at_level(logging.ERROR, logger="textwire.bot.crashy"):
        replies = run(bot, inbound("x"), apology="Sorry, try later.")
    assert bodies(replies) == ["Sorry, try later."]
    assert "secret internals" not in replies[0].body
    record = next(r for r in caplog.records if r.name == "textwire.bot.crashy")
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    assert "boom" in record.getMessage()


def test_bot_apology_overrides_default_and_empty_means_silence() -> None:
    quiet = Bot(apology="")
    custom = Bot(apology="Oops.")
    for bot in (quiet, custom):

        @bot.message()
        def boom(msg: Inbound, ctx: Context) -> str:
            raise RuntimeError

    assert run(quiet, inbound("x")) == []
    assert bodies(run(custom, inbound("x"))) == ["Oops."]


def test_error_hook_replaces_apology_and_a_failing_hook_is_skipped() -> None:
    bot = Bot()
    seen: list[BaseException] = []

    @bot.error
    def broken(exc: BaseException, msg: Inbound, ctx: Context) -> str:
        raise RuntimeError("hook bug")

    @bot.error
    def friendly(exc: BaseException, msg: Inbound, ctx: Context) -> str:
        seen.append(exc)
        return "We're on it."

    @bot.message()
    def boom(msg: Inbound, ctx: Context) -> str:
        raise ValueError("bad")

    assert bodies(run(bot, inbound("x"))) == ["We're on it."]
    assert isinstance(seen[0], ValueError)


def test_reply_over_a_limit_is_an_error_not_a_truncation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = Bot(apology="Sorry.")

    @bot.message("long")
    def long(msg: Inbound, ctx: Context) -> str:
        return "x" * 1601

    @bot.message("many")
    def many(msg: Inbound, ctx: Context) -> Reply:
        return Reply("pics", media=[f"https://x.example/{i}.png" for i in range(11)])

    @bot.message("weird")
    def weird(msg: Inbound, ctx: Context) -> object:
        return 42

    with caplog.at_level(logging.ERROR):
        assert bodies(run(bot, inbound("long"))) == ["Sorry."]
        assert bodies(run(bot, inbound("many"))) == ["Sorry."]
        assert bodies(run(bot, inbound("weird"))) == ["Sorry."]
    text = caplog.text
    assert "1601" in text and "1600" in text
    assert "10" in text
    assert "int" in text


def test_registration_is_frozen_after_first_dispatch() -> None:
    bot = Bot()
    router = Router(name="r")
    bot.include_router(router)
    run(bot, inbound("x"))

    def late(msg: Inbound, ctx: Context) -> str:
        return "late"

    with pytest.raises(RegistrationError, match="finish setup"):
        bot.message("late")(late)
    with pytest.raises(RegistrationError, match="finish setup"):
        router.message("late")(late)
    with pytest.raises(RegistrationError, match="finish setup"):
        bot.include_router(Router(name="new"))
    with pytest.raises(RegistrationError):
        bot.error(lambda exc, msg, ctx: None)


def test_bad_filter_and_double_include_are_registration_errors() -> None:
    bot = Bot()
    router = Router(name="r")
    bot.include_router(router)
    with pytest.raises(RegistrationError, match="already included"):
        bot.include_router(router)
    with pytest.raises(RegistrationError, match="not a filter"):
        router.message(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        F.keyword()


class Signup(States):
    name = State()
    zip_code = State()


def signup_bot() -> Bot:
    bot = Bot(conversation_timeout=timedelta(hours=1))

    @bot.message(F.keyword("join"))
    def join(msg: Inbound, ctx: Context) -> str:
        ctx.state.set(Signup.name)
        return "name?"

    @bot.message(Signup.name)
    def got_name(msg: Inbound, ctx: Context) -> str:
        ctx.state.update(name=msg.text)
        ctx.state.set(Signup.zip_code)
        return "zip?"

    @bot.message(Signup.zip_code, F.regex(r"^\d{5}$"))
    def got_zip(msg: Inbound, ctx: Context) -> str:
        name = ctx.state.data["name"]
        ctx.state.clear()
        return f"welcome {name}"

    @bot.message(Signup.zip_code)
    def bad_zip(msg: Inbound, ctx: Context) -> str:
        return "5 digits please"

    @bot.fallback()
    def menu(msg: Inbound, ctx: Context) -> str:
        return f"menu (state={ctx.state.get()})"

    return bot


def test_conversation_state_walks_a_signup_per_contact() -> None:
    bot, store = signup_bot(), MemoryStateStore()
    alice = {"From": "+14155550111"}
    bob = {"From": "+14155550122"}
    steps = [
        (alice, "JOIN", "name?"),
        (bob, "hi", "menu (state=None)"),
        (alice, "Alice", "zip?"),
        (alice, "abc", "5 digits please"),
        (alice, "94105", "welcome Alice"),
        (alice, "hi", "menu (state=None)"),
    ]
    for who, text, expected in steps:
        assert bodies(run(bot, inbound(text, **who), store)) == [expected], text
    assert Signup.name.name == "Signup.name"


def test_conversation_state_expires() -> None:
    bot, store = signup_bot(), MemoryStateStore()
    run(bot, inbound("join"), store, now=NOW)
    later = NOW + timedelta(minutes=59)
    assert bodies(run(bot, inbound("Al"), store, now=later)) == ["zip?"]
    # The zip question was asked at `later`; an hour after that it is forgotten.
    expired = later + timedelta(hours=1)
    assert bodies(run(bot, inbound("94105"), store, now=expired)) == [
        "menu (state=None)"
    ]


def test_state_filter_and_explicit_ttl() -> None:
    bot = Bot()

    @bot.message(F.keyword("wait"))
    def wait(msg: Inbound, ctx: Context) -> str:
        ctx.state.set("waiting", ttl=timedelta(minutes=5))
        return "waiting"

    @bot.message(F.state("waiting"))
    def waiting(msg: Inbound, ctx: Context) -> str:
        return "still waiting"

    @bot.message(F.state(None))
    def idle(msg: Inbound, ctx: Context) -> str:
        return "idle"

    store = MemoryStateStore()
    assert bodies(run(bot, inbound("wait"), store)) == ["waiting"]
    assert bodies(run(bot, inbound("?"), store)) == ["still waiting"]
    later = NOW + timedelta(minutes=6)
    assert bodies(run(bot, inbound("?"), store, now=later)) == ["idle"]


def test_from_filter_normalizes_its_numbers() -> None:
    bot = Bot()

    @bot.message(F.from_("(415) 555-0111"))
    def vip(msg: Inbound, ctx: Context) -> str:
        return "vip"

    assert bodies(run(bot, inbound("x", From="+14155550111"))) == ["vip"]
    assert run(bot, inbound("x", From="+14155550122")) == []


def test_media_url_needs_a_public_url() -> None:
    bot = Bot()

    @bot.message()
    def pic(msg: Inbound, ctx: Context) -> Reply:
        return Reply("x", media=[ctx.media_url("logo.png")])

    (reply,) = run(bot, inbound("x"))
    assert reply.media == ("https://bot.example.com/media/logo.png",)
    replies = bot.handle(
        inbound("x"),
        state_store=MemoryStateStore(),
        options=HandleOptions(apology="sorry"),
    ).replies
    assert bodies(replies) == ["sorry"]


# -- middleware ------------------------------------------------------------------


def test_middleware_wraps_the_handler_in_the_order_it_was_added() -> None:
    from textwire.middleware import Next

    calls: list[str] = []
    bot = Bot()

    @bot.use
    def outer(msg: Inbound, ctx: Context, next: Next) -> list[Reply]:
        calls.append("outer before")
        replies = next()
        calls.append("outer after")
        return [*replies, Reply("from outer")]

    @bot.use
    def inner(msg: Inbound, ctx: Context, next: Next) -> None:
        calls.append("inner before")
        next()
        calls.append("inner after")  # returns None: keeps next()'s replies

    @bot.message()
    def hello(msg: Inbound, ctx: Context) -> str:
        calls.append("handler")
        return "hello"

    assert bodies(run(bot, inbound("hi"))) == ["hello", "from outer"]
    assert calls == [
        "outer before",
        "inner before",
        "handler",
        "inner after",
        "outer after",
    ]


def test_middleware_that_does_not_call_next_stops_the_message() -> None:
    from textwire.middleware import Next

    handled: list[str] = []
    bot = Bot()

    @bot.use
    def closed_on_sunday(msg: Inbound, ctx: Context, next: Next) -> str | None:
        if msg.text == "sunday":
            return "We are closed today."
        return None if msg.text == "quiet" else next()  # type: ignore[return-value]

    @bot.message()
    def answer(msg: Inbound, ctx: Context) -> str:
        handled.append(msg.text)
        return "open"

    assert bodies(run(bot, inbound("sunday"))) == ["We are closed today."]
    assert run(bot, inbound("quiet")) == []
    assert bodies(run(bot, inbound("monday"))) == ["open"]
    assert handled == ["monday"]


def test_a_failing_middleware_gets_the_apology_and_next_runs_once() -> None:
    from textwire.middleware import Next

    bot = Bot(apology="sorry")

    @bot.use
    def twice(msg: Inbound, ctx: Context, next: Next) -> list[Reply]:
        next()
        return next()

    @bot.message()
    def answer(msg: Inbound, ctx: Context) -> str:
        return "once"

    outcome = bot.handle(inbound("x"), state_store=MemoryStateStore())
    assert bodies(list(outcome.replies)) == ["sorry"] and outcome.failed


def test_stop_never_reaches_middleware_or_handlers_and_opts_out() -> None:
    from textwire.middleware import Next

    seen: list[str] = []
    bot = Bot()

    @bot.use
    def spy(msg: Inbound, ctx: Context, next: Next) -> list[Reply]:
        seen.append(msg.text)
        return next()

    @bot.message()
    def answer(msg: Inbound, ctx: Context) -> str:
        return "hi"

    stop = bot.handle(inbound("STOP"), state_store=MemoryStateStore())
    assert stop.replies == () and stop.opt_out is True and stop.keyword == "stop"
    after = bot.handle(inbound("hello"), state_store=MemoryStateStore(), opted_out=True)
    assert after.replies == () and after.opt_out is None
    start = bot.handle(inbound("START"), state_store=MemoryStateStore(), opted_out=True)
    assert start.opt_out is False and start.replies == ()
    assert seen == []
    # Without the opt-out middleware the bot sees every message
    open_bot = Bot(handle_opt_out=False)
    open_bot.message()(answer)
    outcome = open_bot.handle(inbound("STOP"), state_store=MemoryStateStore())
    assert bodies(list(outcome.replies)) == ["hi"] and outcome.opt_out is None
    assert [m.__name__ for m in open_bot.middleware] == [
        "handoff",
        "mms_policy",
        "media_hosts",
    ]


def test_the_mms_policy_and_media_check_apply_to_every_reply() -> None:
    bot = Bot(apology="sorry")

    @bot.message("pic")
    def pic(msg: Inbound, ctx: Context) -> Reply:
        return Reply("look", media=["https://cdn.example.com/a.png"])

    @bot.message("private")
    def private(msg: Inbound, ctx: Context) -> Reply:
        return Reply("look", media=["http://192.168.1.10/a.png"])

    uk = inbound("pic", From="+447911123456", FromCountry="GB")
    (reply,) = run(bot, uk)
    assert reply.media == () and "https://cdn.example.com/a.png" in reply.body
    assert bodies(run(bot, inbound("private"))) == ["sorry"]


def test_middleware_registration_is_checked_and_frozen() -> None:
    bot = Bot()

    async def not_allowed(msg: Inbound, ctx: Context, next: object) -> None:
        return None

    with pytest.raises(RegistrationError, match="plain function"):
        bot.use(not_allowed)  # type: ignore[arg-type]
    with pytest.raises(RegistrationError, match="callable"):
        bot.use("nope")  # type: ignore[arg-type]
    run(bot, inbound("x"))
    with pytest.raises(RegistrationError, match="finish setup"):
        bot.use(lambda msg, ctx, next: next())


def test_state_changes_come_back_uncommitted() -> None:
    bot = Bot()

    @bot.message()
    def remember(msg: Inbound, ctx: Context) -> str:
        ctx.state.update(seen=msg.text)
        return "ok"

    store = MemoryStateStore()
    outcome = bot.handle(inbound("x"), state_store=store)
    assert [r.data for r in outcome.state_changes.values() if r] == [{"seen": "x"}]
    key = next(iter(outcome.state_changes))
    assert store.load(key) is None  # nothing written until the caller commits

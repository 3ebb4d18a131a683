"""The inbox: the webhook only records; workers handle, in order, exactly once.

Every test runs on SQLite and on PostgreSQL (the ``store`` fixture). Handlers
that must be "in the middle" of something block on events the test controls;
nothing waits on the clock.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from textwire import Bot, Context, Inbound, Reply
from textwire.config import Settings
from textwire.storage.sql import SqlStore
from textwire.testing import BotTester
from textwire.web import create_app
from textwire.worker import InboxWorker, Worker

from .conditions import wait_until
from .conftest import (
    PUBLIC_URL,
    TwilioAPI,
    api_transport,
    base_settings,
    make_form,
    sign,
)

ANA = "+14155550199"
BEN = "+14155550142"


def soon() -> datetime:
    """A moment just after now: every message the webhook recorded is due."""
    return datetime.now(UTC) + timedelta(seconds=1)


LONG = 30.0  # seconds a test waits for another thread, at most


def post(app: Flask, form: dict[str, str]) -> int:
    response = app.test_client().post(
        "/twilio/sms",
        data=form,
        headers={"X-Twilio-Signature": sign(PUBLIC_URL + "/twilio/sms", form)},
    )
    return response.status_code


def outbound(store: SqlStore) -> list[tuple[str, str]]:
    return [(m["to_number"], m["body"]) for m in store.messages.all("outbound")]


@pytest.fixture
def inbox_settings(settings: Settings) -> Settings:
    return settings.replace(handler_concurrency=8, lease_seconds=60.0)


@pytest.fixture
def stop_after() -> Iterator[list[InboxWorker]]:
    """Workers to stop when the test ends, whatever happened."""
    workers: list[InboxWorker] = []
    yield workers
    for worker in workers:
        worker.stop()


def inbox(
    store: SqlStore, bot: Bot, settings: Settings, name: str, keep: list[InboxWorker]
) -> InboxWorker:
    worker = InboxWorker(store, bot, settings=settings, worker_id=name)
    keep.append(worker)
    return worker


# -- the webhook only records ----------------------------------------------------


def test_the_webhook_records_and_the_worker_handles(
    store: SqlStore, inbox_settings: Settings, stop_after: list[InboxWorker]
) -> None:
    calls: list[str] = []
    bot = Bot(name="echo")

    @bot.message()
    def echo(msg: Inbound, ctx: Context) -> str:
        calls.append(msg.body)
        count = ctx.state.data.get("n", 0) + 1
        ctx.state.update(n=count)
        return f"{msg.body} #{count}"

    app = create_app(inbox_settings, bot=bot, store=store)
    # When two webhooks arrive
    assert post(app, make_form("one", From=ANA)) == 200
    assert post(app, make_form("two", From=ANA)) == 200
    # Then they are stored for the worker; no handler ran, nothing is queued
    assert calls == []
    assert [r["status"] for r in store.inbox.rows()] == ["pending", "pending"]
    assert store.outbox.depth() == 0
    # When the worker runs: one contact's messages one at a time, in order
    worker = inbox(store, bot, inbox_settings, "w", stop_after)
    assert worker.run_once() == 1
    assert worker.run_once() == 1
    assert worker.run_once() == 0
    assert calls == ["one", "two"]
    assert outbound(store) == [(ANA, "one #1"), (ANA, "two #2")]
    assert [r["status"] for r in store.inbox.rows()] == ["done", "done"]


def test_contacts_run_in_parallel_and_each_in_order_across_two_workers(
    store: SqlStore, inbox_settings: Settings, stop_after: list[InboxWorker]
) -> None:
    # Given 12 messages from Ana and 12 from Ben, interleaved
    seen: list[tuple[str, str]] = []
    busy: Counter[str] = Counter()
    overlaps: list[str] = []
    lock = threading.Lock()
    ben_started = threading.Event()
    bot = Bot(name="order")

    @bot.message()
    def record(msg: Inbound, ctx: Context) -> str:
        with lock:
            busy[msg.from_] += 1
            if busy[msg.from_] > 1:
                overlaps.append(msg.body)
            seen.append((msg.from_, msg.body))
        if msg.from_ == BEN:
            ben_started.set()
        elif msg.body == "0":
            # Ana's first waits until Ben's first runs: proof that contacts
            # are handled side by side (serially, this would time out).
            assert ben_started.wait(LONG)
        with lock:
            busy[msg.from_] -= 1
        return f"ok {msg.body}"

    app = create_app(inbox_settings, bot=bot, store=store)
    for i in range(12):
        assert post(app, make_form(str(i), From=ANA)) == 200
        assert post(app, make_form(str(i), From=BEN)) == 200
    workers = [inbox(store, bot, inbox_settings, f"w{n}", stop_after) for n in (1, 2)]
    errors: list[BaseException] = []

    def drain(worker: InboxWorker) -> None:
        try:
            while any(r["status"] != "done" for r in store.inbox.rows()):
                worker.run_once()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LONG * 4)
    assert errors == [] and not any(t.is_alive() for t in threads)
    # Then each contact's messages were handled one at a time, in order
    assert overlaps == []
    for who in (ANA, BEN):
        assert [body for frm, body in seen if frm == who] == [str(i) for i in range(12)]
    # and each got exactly its 12 replies, in order
    for who in (ANA, BEN):
        assert [b for to, b in outbound(store) if to == who] == [
            f"ok {i}" for i in range(12)
        ]


def test_a_lease_taken_over_mid_handler_commits_nothing_from_the_slow_worker(
    store: SqlStore, inbox_settings: Settings, stop_after: list[InboxWorker]
) -> None:
    calls: list[str] = []
    entered = threading.Event()
    release = threading.Event()
    bot = Bot(name="slow")

    @bot.message()
    def slow(msg: Inbound, ctx: Context) -> str:
        calls.append(threading.current_thread().name)
        ctx.state.update(seen=ctx.state.data.get("seen", 0) + 1)
        if len(calls) == 1:  # the first worker's run: held until released
            entered.set()
            assert release.wait(LONG)
        return "the answer"

    app = create_app(inbox_settings, bot=bot, store=store)
    assert post(app, make_form("question", From=ANA)) == 200
    first = inbox(store, bot, inbox_settings, "first", stop_after)
    second = inbox(store, bot, inbox_settings, "second", stop_after)
    at = soon()
    runner = threading.Thread(target=first.run_once, kwargs={"now": at})
    runner.start()
    assert entered.wait(LONG)
    # When the first worker's lease runs out and the second takes the row
    assert second.run_once(now=at + timedelta(minutes=5)) == 1
    assert outbound(store) == [(ANA, "the answer")]
    # and the first worker's handler finally returns
    release.set()
    runner.join(LONG)
    assert not runner.is_alive()
    # Then its commit was refused: one reply, the state as if handled once
    assert len(calls) == 2
    assert outbound(store) == [(ANA, "the answer")]
    with store.begin() as conn:
        from textwire.conversation import ConversationKey

        record = store.states.store(conn).load(
            ConversationKey(bot_number="+14155550100", contact=ANA)
        )
    assert record is not None and record.data == {"seen": 1}
    (row,) = store.inbox.rows()
    assert (row["status"], row["claimed_by"], row["attempts"]) == ("done", "second", 2)


# -- failures -----------------------------------------------------------------


def test_a_handler_that_raises_gets_the_apology_and_the_row_is_done(
    store: SqlStore,
    inbox_settings: Settings,
    stop_after: list[InboxWorker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = Bot(name="fragile", apology="Sorry, try again.")

    @bot.message()
    def explode(msg: Inbound, ctx: Context) -> str:
        raise KeyError("the price list")

    app = create_app(inbox_settings, bot=bot, store=store)
    assert post(app, make_form("price?", From=ANA)) == 200
    with caplog.at_level(logging.ERROR):
        assert inbox(store, bot, inbox_settings, "w", stop_after).run_once() == 1
    assert outbound(store) == [(ANA, "Sorry, try again.")]
    assert [r["status"] for r in store.inbox.rows()] == ["done"]
    assert any(
        r.exc_info and "the price list" in str(r.exc_info[1]) for r in caplog.records
    )


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_handler_past_its_time_gets_the_apology_and_its_late_result_is_dropped(
    store: SqlStore,
    inbox_settings: Settings,
    stop_after: list[InboxWorker],
    kind: str,
) -> None:
    settings = inbox_settings.replace(handler_timeout=0.5)
    release = threading.Event()
    finished = threading.Event()
    cancelled: list[bool] = []
    bot = Bot(name="stuck", apology="Sorry, that took too long.")

    if kind == "sync":

        @bot.message()
        def stuck(msg: Inbound, ctx: Context) -> str:
            ctx.state.set("late")
            assert release.wait(LONG)
            finished.set()
            return "too late"

    else:

        @bot.message()
        async def stuck_async(msg: Inbound, ctx: Context) -> str:
            ctx.state.set("late")
            try:
                await asyncio.Event().wait()  # never set: only a cancel ends it
            except asyncio.CancelledError:
                cancelled.append(True)
                finished.set()
                raise
            return "too late"

    app = create_app(settings, bot=bot, store=store)
    assert post(app, make_form("slow one", From=ANA)) == 200
    worker = inbox(store, bot, settings, "w", stop_after)
    # When the handler runs past TEXTWIRE_HANDLER_TIMEOUT
    assert worker.run_once() == 1
    # Then the contact gets the apology and the row is done
    assert outbound(store) == [(ANA, "Sorry, that took too long.")]
    assert [r["status"] for r in store.inbox.rows()] == ["done"]
    # and whatever the handler does later is dropped
    release.set()
    assert finished.wait(LONG)
    assert worker.run_once() == 0
    assert outbound(store) == [(ANA, "Sorry, that took too long.")]
    assert store.inbox.rows()[0]["status"] == "done"
    if kind == "async":
        assert cancelled == [True]  # the coroutine was cancelled, not left running


def test_async_handlers_and_error_hooks_share_the_workers_event_loop(
    store: SqlStore, inbox_settings: Settings, stop_after: list[InboxWorker]
) -> None:
    loops: list[int] = []
    threads: list[str] = []

    class Client:
        """An async client bound to the loop it was first used on."""

        loop: asyncio.AbstractEventLoop | None = None

        async def get(self, what: str) -> str:
            running = asyncio.get_running_loop()
            if self.loop is None:
                self.loop = running
            assert self.loop is running, "a second event loop"
            await asyncio.sleep(0)
            return what.upper()

    client = Client()
    bot = Bot(name="async")

    @bot.message("boom")
    async def boom(msg: Inbound, ctx: Context) -> str:
        raise ValueError("boom")

    @bot.message()
    async def answer(msg: Inbound, ctx: Context) -> Reply:
        loops.append(id(asyncio.get_running_loop()))
        threads.append(threading.current_thread().name)
        return Reply(await client.get(msg.body))

    @bot.error
    async def hook(exc: BaseException, msg: Inbound, ctx: Context) -> str:
        return "hook: " + await client.get(str(exc))

    app = create_app(inbox_settings, bot=bot, store=store)
    for body in ("hello", "again"):
        assert post(app, make_form(body, From=ANA)) == 200
    assert post(app, make_form("boom", From=BEN)) == 200
    worker = inbox(store, bot, inbox_settings, "w", stop_after)
    while worker.run_once():
        pass
    assert sorted(outbound(store)) == sorted(
        [(ANA, "HELLO"), (ANA, "AGAIN"), (BEN, "hook: BOOM")]
    )
    # one loop, on the worker's own thread (not a handler thread)
    assert len(set(loops)) == 1 and len(set(threads)) == 1
    assert threads[0] == worker.loop.name


def test_a_database_failure_at_commit_retries_the_message(
    store: SqlStore, inbox_settings: Settings, stop_after: list[InboxWorker]
) -> None:
    calls: list[str] = []
    bot = Bot(name="counted")

    @bot.message()
    def answer(msg: Inbound, ctx: Context) -> str:
        calls.append(msg.sid)
        ctx.state.update(n=ctx.state.data.get("n", 0) + 1)
        return "done"

    app = create_app(inbox_settings, bot=bot, store=store)
    assert post(app, make_form("hi", From=ANA)) == 200
    # Given the database failing once, as the commit writes the reply
    failures = [True]

    def fail_once(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if failures and statement.lstrip().upper().startswith("INSERT INTO OUTBOX"):
            failures.pop()
            raise OperationalError(statement, None, ConnectionError("server closed"))

    event.listen(store.engine, "before_cursor_execute", fail_once)
    try:
        worker = inbox(store, bot, inbox_settings, "w", stop_after)
        at = soon()
        assert worker.run_once(now=at) == 1
        # Then nothing was written, and the row waits to be handled again
        assert outbound(store) == []
        (row,) = store.inbox.rows()
        assert row["status"] == "pending" and "OperationalError" in row["last_error"]
        assert worker.run_once(now=at) == 0  # backing off
        # When it is due again, the handler runs again and commits once
        assert worker.run_once(now=at + timedelta(minutes=2)) == 1
    finally:
        event.remove(store.engine, "before_cursor_execute", fail_once)
    assert len(calls) == 2  # the handler: at least once
    assert outbound(store) == [(ANA, "done")]  # its effects: exactly once
    assert store.inbox.rows()[0]["status"] == "done"


def test_stop_while_an_earlier_message_is_handled_waits_its_turn(
    store: SqlStore, inbox_settings: Settings, stop_after: list[InboxWorker]
) -> None:
    seen: list[str] = []
    entered = threading.Event()
    release = threading.Event()
    bot = Bot(name="shop")

    @bot.message()
    def order(msg: Inbound, ctx: Context) -> str:
        seen.append(msg.body)
        entered.set()
        assert release.wait(LONG)
        return "your order is placed"

    app = create_app(inbox_settings, bot=bot, store=store)
    assert post(app, make_form("order pizza", From=ANA)) == 200
    first = inbox(store, bot, inbox_settings, "first", stop_after)
    second = inbox(store, bot, inbox_settings, "second", stop_after)
    runner = threading.Thread(target=first.run_once)
    runner.start()
    assert entered.wait(LONG)
    # When STOP arrives while the order is being handled
    assert post(app, make_form("STOP", From=ANA)) == 200
    # Then no worker may take it yet: the contact's earlier message is open
    assert second.run_once() == 0
    release.set()
    runner.join(LONG)
    assert second.run_once() == 1
    # STOP never reached a handler; it was handled after the order
    assert seen == ["order pizza"]
    assert store.contacts.opted_out_among([ANA]) == {ANA}
    done = [r["handled_at"] for r in store.inbox.rows()]
    assert done[0] <= done[1]
    assert outbound(store) == [(ANA, "your order is placed")]


def test_a_handler_can_write_to_the_database_itself(
    store: SqlStore, inbox_settings: Settings, stop_after: list[InboxWorker]
) -> None:
    # A handler runs outside textwire's write transaction: its own write to
    # the same database (SQLite allows one writer) does not wait on textwire.
    bot = Bot(name="writer")

    @bot.message()
    def note(msg: Inbound, ctx: Context) -> str:
        with store.engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS notes (sid TEXT)"))
            conn.execute(text("INSERT INTO notes VALUES (:sid)"), {"sid": msg.sid})
        return "noted"

    app = create_app(inbox_settings, bot=bot, store=store)
    assert post(app, make_form("remember this", From=ANA)) == 200
    assert inbox(store, bot, inbox_settings, "w", stop_after).run_once() == 1
    assert outbound(store) == [(ANA, "noted")]
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM notes")).scalar_one() == 1


# -- waking -------------------------------------------------------------------


def test_a_webhook_wakes_the_worker_in_the_same_process(
    store: SqlStore, settings: Settings, transport: Any, twilio_api: TwilioAPI
) -> None:
    # Given a runtime whose worker would otherwise poll only once a minute
    from textwire.examples.helpdesk import create_bot
    from textwire.runtime import Runtime

    slow_poll = settings.replace(worker_poll_interval=60.0)
    runtime = Runtime(slow_poll, create_bot(), store, transport, owns_store=False)
    app = create_app(runtime=runtime)
    runtime.start()
    try:
        # When a webhook is recorded, the reply is sent well before any poll
        assert post(app, make_form("hours", From=ANA)) == 200
        wait_until(lambda: len(twilio_api.creates) == 1, "the reply", timeout=LONG)
    finally:
        runtime.stop()
    (create,) = twilio_api.creates
    assert create["form"]["To"] == [ANA]


@pytest.mark.postgres
def test_notify_wakes_a_worker_in_another_process(
    postgres_url: str, twilio_api: TwilioAPI
) -> None:
    # Given a web app without a worker (gunicorn) and a worker elsewhere that
    # would poll only once a minute, both on PostgreSQL
    from textwire.examples.helpdesk import create_bot

    web_store = SqlStore(postgres_url)
    web_store.upgrade()
    worker_store = SqlStore(postgres_url)
    pg = base_settings(postgres_url).replace(worker_poll_interval=60.0)
    transport = api_transport(twilio_api)
    worker = Worker(worker_store, create_bot(), transport, settings=pg)
    app = create_app(pg, bot=create_bot(), store=web_store)
    worker.start()
    try:
        assert worker.listener is not None
        assert worker.listener.connected.wait(LONG)
        # When the web side records a message, LISTEN/NOTIFY wakes the worker
        assert post(app, make_form("hours", From=ANA)) == 200
        wait_until(lambda: len(twilio_api.creates) == 1, "the reply", timeout=LONG)
    finally:
        worker.stop()
        transport.close()
        web_store.dispose()
        worker_store.dispose()


# -- one path for tests and production ----------------------------------------


SCRIPT: list[tuple[str, str, tuple[str, ...]]] = [
    (ANA, "help", ()),
    (ANA, "ticket", ()),
    (
        ANA,
        "",
        ("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",),
    ),
    (ANA, "The printer is on fire", ()),
    ("+447911123456", "help", ()),  # a phone without MMS: links instead
    (BEN, "STOP", ()),
    (BEN, "help", ()),  # opted out: no reply
    (BEN, "START", ()),
    (BEN, "hours", ()),
    (ANA, "what now?", ()),
]


def test_bottester_and_production_give_the_same_replies(
    store: SqlStore,
    settings: Settings,
    bot: Bot,
    worker: Worker,
    twilio_api: TwilioAPI,
) -> None:
    app = create_app(settings, bot=bot, store=store)
    tester = BotTester(bot, settings=settings)
    production: list[list[tuple[str, tuple[str, ...]]]] = []
    tested: list[list[tuple[str, tuple[str, ...]]]] = []
    for sender, body, media in SCRIPT:
        extra = {f"MediaUrl{i}": url for i, url in enumerate(media)}
        form = make_form(body, From=sender, NumMedia=str(len(media)), **extra)
        before = len(twilio_api.creates)
        assert post(app, form) == 200
        while worker.run_once():
            pass
        production.append(
            [
                (c["form"].get("Body", [""])[0], tuple(c["form"].get("MediaUrl", [])))
                for c in twilio_api.creates[before:]
            ]
        )
        # the very message production got (its SID numbers the ticket)
        outcome = tester.handle(Inbound.from_form(form))
        tested.append([(r.body, r.media) for r in outcome.replies])
    assert tested == production
    # and the script did exercise what it meant to
    assert production[0][0][1] and production[4][0][1] == ()  # MMS vs links
    assert "https://" in production[4][0][0]
    assert production[5] == production[6] == production[7] == []
    assert production[8] and production[9]


@pytest.mark.postgres
def test_the_database_restarting_between_recording_and_handling_loses_nothing(
    postgres_url: str, stop_after: list[InboxWorker]
) -> None:
    import uuid

    import sqlalchemy

    name = f"tw-restart-{uuid.uuid4().hex[:8]}"
    store = SqlStore(f"{postgres_url}&application_name={name}")
    store.upgrade()
    pg = base_settings(store.url)
    bot = Bot(name="after-restart")

    @bot.message()
    def answer(msg: Inbound, ctx: Context) -> str:
        return f"got {msg.body}"

    try:
        app = create_app(pg, bot=bot, store=store)
        assert post(app, make_form("before the restart", From=ANA)) == 200
        # When every connection the store holds is cut, as a restart does
        admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            cut = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": name},
            ).scalar_one()
        admin.dispose()
        assert cut >= 1
        # Then the worker reconnects and handles the message once
        worker = inbox(store, bot, pg, "w", stop_after)
        assert worker.run_once() == 1
        assert outbound(store) == [(ANA, "got before the restart")]
        assert [r["status"] for r in store.inbox.rows()] == ["done"]
    finally:
        for worker in stop_after:
            worker.stop()
        stop_after.clear()
        store.dispose()

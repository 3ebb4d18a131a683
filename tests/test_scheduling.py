"""Scheduled and bulk rows in the outbox: send times, priority, quiet hours,
cancellation, pausing; stepped by the clock (``now=``), never by waiting.

Every test runs on SQLite and on PostgreSQL (the ``store`` fixture).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from textwire import Bot, Context, Inbound, send_message
from textwire.config import Settings
from textwire.errors import InvalidSendTime, RecipientOptedOut
from textwire.storage.outbox import NewMessage, RatePlan
from textwire.storage.schema import PRIORITY_BULK
from textwire.storage.sql import SqlStore
from textwire.transports.twilio import TwilioTransport
from textwire.worker import Worker

from .conftest import BOT_NUMBER, TwilioAPI, make_form

ANA = "+14155550199"  # Los Angeles
BEN = "+14155550142"
NOW = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)  # 10:00 in Los Angeles
LEASE = timedelta(seconds=60)
LA = ZoneInfo("America/Los_Angeles")


def queue(store: SqlStore, to: str = ANA, body: str = "hi", **extra: Any) -> int:
    with store.begin() as conn:
        return store.outbox.enqueue(
            conn,
            to=to,
            body=body,
            media=(),
            from_=BOT_NUMBER,
            messaging_service_sid=None,
            now=NOW,
            **extra,
        )


def claim(store: SqlStore, at: datetime, limit: int = 50, **extra: Any) -> list[int]:
    items = store.outbox.claim(at, limit=limit, worker_id="w", lease=LEASE, **extra)
    return [item.id for item in items]


def new_broadcast(store: SqlStore, name: str = "b") -> int:
    return store.broadcasts.create(
        now=NOW,
        name=name,
        source_path="/tmp/x.csv",
        source_sha256=name * 8,
        body="hi",
        media=[],
        number_column="phone",
        region="US",
        from_number=BOT_NUMBER,
    )


def bulk(store: SqlStore, broadcast_id: int | None, numbers: list[str]) -> None:
    with store.begin() as conn:
        store.outbox.enqueue_batch(
            conn,
            [
                NewMessage(
                    to=n,
                    body="sale",
                    media=(),
                    from_=BOT_NUMBER,
                    messaging_service_sid=None,
                    priority=PRIORITY_BULK,
                    broadcast_id=broadcast_id,
                )
                for n in numbers
            ],
            now=NOW,
        )


def phones(n: int, start: int = 0) -> list[str]:
    return [f"+1415555{start + i:04d}" for i in range(n)]


# -- send times -------------------------------------------------------------------


def test_a_scheduled_row_is_never_claimed_before_its_send_at(store: SqlStore) -> None:
    row = queue(store, send_at=NOW + timedelta(hours=1))
    for minutes in (0, 1, 30, 59):
        assert claim(store, NOW + timedelta(minutes=minutes)) == []
    assert claim(store, NOW + timedelta(hours=1)) == [row]


def test_send_at_wins_over_an_earlier_due_time(store: SqlStore) -> None:
    # Even a row put off to an earlier next attempt is not sent before send_at.
    row = queue(store, send_at=NOW + timedelta(hours=1))
    with store.begin() as conn:
        conn.exec_driver_sql(
            f"UPDATE outbox SET next_attempt_at = created_at WHERE id = {row}"
        )
    assert claim(store, NOW + timedelta(minutes=5)) == []
    assert claim(store, NOW + timedelta(hours=1)) == [row]


def test_a_row_scheduled_for_later_holds_up_no_reply(store: SqlStore) -> None:
    reminder = queue(store, body="tomorrow's reminder", send_at=NOW + timedelta(days=1))
    reply = queue(store, body="a reply now")
    assert claim(store, NOW) == [reply]
    assert claim(store, NOW + timedelta(days=1)) == [reminder]


# -- priority -----------------------------------------------------------------------


def test_replies_are_claimed_before_bulk_rows(store: SqlStore) -> None:
    bulk(store, None, phones(40))
    reply = queue(store, to=BEN, body="a reply")
    assert claim(store, NOW, limit=5)[0] == reply


def test_a_queued_bulk_row_holds_up_no_reply_to_the_same_phone(
    store: SqlStore,
) -> None:
    bulk(store, None, [ANA])
    reply = queue(store, to=ANA, body="a reply")
    assert claim(store, NOW, limit=1) == [reply]


def test_a_reply_takes_the_next_rate_limit_slot_ahead_of_a_backlog(
    store: SqlStore,
) -> None:
    # A long code: one segment a second. Bulk rows reserve slots at most
    # 0.25 s ahead, so a reply arriving behind 200 of them starts within about
    # one bulk message's cost of now.
    plan = RatePlan(
        key=lambda from_, service: from_ or "x",
        cost=lambda key, segments: float(segments),
        max_wait=1.0,
        bulk_max_wait=0.25,
    )
    bulk(store, None, phones(200))
    taken = store.outbox.claim(NOW, limit=20, worker_id="w", lease=LEASE, rates=plan)
    assert len(taken) == 1 and taken[0].slot == NOW.timestamp()
    queue(store, to=BEN, body="a reply")
    later = NOW + timedelta(milliseconds=100)
    [reply] = store.outbox.claim(
        later, limit=20, worker_id="w", lease=LEASE, rates=plan
    )
    assert reply.to == BEN
    assert reply.slot is not None and reply.slot - later.timestamp() <= 1.0


# -- quiet hours ----------------------------------------------------------------------


def test_quiet_hours_hold_a_bulk_row_until_the_recipients_morning(
    store: SqlStore,
) -> None:
    night = datetime(2026, 12, 2, 22, 0, tzinfo=LA)
    morning = datetime(2026, 12, 3, 9, 0, tzinfo=LA)
    [row_id] = [queue(store, priority=PRIORITY_BULK, quiet_hours="21:00-09:00")]
    assert claim(store, night) == []
    assert store.outbox.waiting_counts(night)["held"] == 1
    for step in (night + timedelta(hours=3), morning - timedelta(minutes=1)):
        assert claim(store, step) == [], step
    assert claim(store, morning) == [row_id]


def test_a_reply_is_never_held(store: SqlStore) -> None:
    night = datetime(2026, 12, 2, 23, 30, tzinfo=LA)
    reply = queue(store, body="answer to a text at 23:30")
    assert claim(store, night) == [reply]


def test_a_timezone_given_for_the_row_wins_over_the_number(store: SqlStore) -> None:
    # 10:00 in Los Angeles is 03:00 in Tokyo: quiet there.
    row = queue(store, quiet_hours="21:00-09:00", time_zone="Asia/Tokyo")
    assert claim(store, NOW) == []
    tokyo_morning = datetime(2026, 12, 3, 9, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert claim(store, tokyo_morning) == [row]


def test_waiting_counts(store: SqlStore) -> None:
    queue(store, send_at=NOW + timedelta(hours=2))
    queue(store, to=BEN, quiet_hours="09:00-12:00", priority=PRIORITY_BULK)
    bulk(store, None, phones(3))
    claim(store, NOW, limit=1)  # holds BEN's row (10:00 in LA is quiet)
    counts = store.outbox.waiting_counts(NOW)
    assert counts == {"scheduled": 1, "held": 1, "bulk": 4}


# -- cancelling


def test_cancel_waiting_rows_and_say_what_the_others_are(store: SqlStore) -> None:
    waiting = queue(store, send_at=NOW + timedelta(hours=1))
    in_flight = queue(store, to=BEN)
    assert claim(store, NOW) == [in_flight]
    result = store.outbox.cancel([waiting, in_flight, 999], now=NOW)
    assert result == {waiting: "cancelled", in_flight: "sending", 999: None}
    # Only the row in flight comes back (its lease ran out), never the other.
    assert claim(store, NOW + timedelta(hours=2)) == [in_flight]
    statuses = {m["id"]: m["status"] for m in store.messages.all("outbound")}
    assert sorted(statuses.values()) == ["canceled", "pending"]


def test_a_sent_row_is_not_cancelled(store: SqlStore) -> None:
    row = queue(store)
    [item] = store.outbox.claim(NOW, limit=1, worker_id="w", lease=LEASE)
    store.outbox.mark_sent(
        item, "w", sid="SM1", status="queued", num_segments=1, now=NOW
    )
    assert store.outbox.cancel([row], now=NOW) == {row: "sent"}


# -- broadcasts


def test_a_broadcast_is_claimed_only_while_sending(store: SqlStore) -> None:
    b = new_broadcast(store)
    bulk(store, b, phones(4))
    assert claim(store, NOW) == []  # still importing
    store.broadcasts.move(b, "sending", only_from=("importing",), now=NOW)
    first = claim(store, NOW, limit=1)
    assert len(first) == 1
    store.broadcasts.move(b, "paused", only_from=("sending",), now=NOW)
    # Paused: the next claim (the next second) takes none of it.
    assert claim(store, NOW + timedelta(seconds=1)) == []
    # The row in flight when it paused is finished once its lease runs out.
    assert claim(store, NOW + LEASE + timedelta(seconds=1)) == first
    store.broadcasts.move(b, "sending", only_from=("paused",), now=NOW)
    assert len(claim(store, NOW + LEASE + timedelta(seconds=2))) == 3


def test_cancel_marks_every_unsent_row_cancelled(store: SqlStore) -> None:
    b = new_broadcast(store)
    bulk(store, b, phones(5))
    store.broadcasts.move(b, "sending", only_from=("importing",), now=NOW)
    [item] = store.outbox.claim(NOW, limit=1, worker_id="w", lease=LEASE)
    assert store.broadcasts.cancel(b, now=NOW) == 4
    assert store.broadcasts.cancel(b, now=NOW) is None
    # The row in flight fails temporarily: it is cancelled, not queued again.
    store.outbox.mark_retry(
        item, "w", next_attempt_at=NOW, error="500", code=20500, now=NOW
    )
    progress = store.broadcasts.progress(b, NOW)
    assert progress["cancelled"] == 5 and progress["open"] == 0
    assert claim(store, NOW + timedelta(hours=1)) == []


# -- from a handler, through the worker


def reminder_bot() -> Bot:
    bot = Bot("reminders")

    @bot.message("book")
    def book(msg: Inbound, ctx: Context) -> str:
        ctx.schedule("How did your visit go?", at=timedelta(hours=1))
        ctx.reply("See you!", at="+2h")
        return "Booked."

    @bot.message("broken")
    def broken(msg: Inbound, ctx: Context) -> str:
        ctx.schedule("never sent", at=timedelta(hours=1))
        raise RuntimeError("boom")

    return bot


def test_a_handler_schedules_a_reminder_an_hour_later(
    store: SqlStore,
    settings: Settings,
    transport: TwilioTransport,
    twilio_api: TwilioAPI,
) -> None:
    worker = Worker(store, reminder_bot(), transport, settings=settings, worker_id="t")
    try:
        store.inbox.record(Inbound.from_form(make_form("book", From=ANA)), NOW)
        worker.run_once(NOW)
        worker.run_once(NOW)
        assert [c["form"]["Body"] for c in twilio_api.creates] == [["Booked."]]
        worker.run_once(NOW + timedelta(minutes=59))
        assert len(twilio_api.creates) == 1
        worker.run_once(NOW + timedelta(hours=1))
        worker.run_once(NOW + timedelta(hours=2))
        bodies = [c["form"]["Body"][0] for c in twilio_api.creates]
        assert bodies == ["Booked.", "How did your visit go?", "See you!"]
        assert {c["form"]["To"][0] for c in twilio_api.creates} == {ANA}
    finally:
        worker.stop()


def test_a_failed_handler_schedules_nothing(
    store: SqlStore, settings: Settings, transport: TwilioTransport
) -> None:
    worker = Worker(store, reminder_bot(), transport, settings=settings, worker_id="t")
    try:
        store.inbox.record(Inbound.from_form(make_form("broken", From=ANA)), NOW)
        worker.run_once(NOW)
        assert store.outbox.scheduled(NOW, finished=True) == []
    finally:
        worker.stop()


def test_scheduled_messages_from_a_handler_get_the_quiet_hours(
    store: SqlStore, settings: Settings, transport: TwilioTransport
) -> None:
    quiet = settings.replace(quiet_hours="21:00-09:00")
    worker = Worker(store, reminder_bot(), transport, settings=quiet, worker_id="t")
    try:
        store.inbox.record(Inbound.from_form(make_form("book", From=ANA)), NOW)
        worker.inbox.run_once(NOW)
        rows = store.outbox.scheduled(NOW)
        assert [r["body"] for r in rows] == ["How did your visit go?", "See you!"]
        assert all(r["send_at"] > NOW for r in rows)
    finally:
        worker.stop()


# -- send_message


def test_send_message_queues_one_path_with_the_cli(
    store: SqlStore, settings: Settings
) -> None:
    [now_id] = send_message("(415) 555-0199", "now", settings=settings, store=store)
    [later_id] = send_message(
        "+44 7400 123456", "later", at="tomorrow 09:00", settings=settings, store=store
    )
    rows = {r["id"]: r for r in store.outbox.scheduled(datetime.now(UTC))}
    assert now_id not in rows
    send_at = rows[later_id]["send_at"]
    assert send_at.astimezone(ZoneInfo("Europe/London")).hour == 9
    with pytest.raises(InvalidSendTime, match="in the past"):
        send_message(ANA, "x", at="yesterday", settings=settings, store=store)
    with store.begin() as conn:
        store.contacts.set_opt_out(conn, BEN, True, NOW)
    with pytest.raises(RecipientOptedOut):
        send_message(BEN, "x", at="+1h", settings=settings, store=store)


# -- metrics ---------------------------------------------------------------------------


def test_metrics_count_scheduled_held_and_bulk_rows(store: SqlStore) -> None:
    from textwire import metrics

    from .test_metrics import parse, value

    later = datetime.now(UTC) + timedelta(hours=3)
    queue(store, send_at=later)
    queue(store, to=BEN, send_at=later)
    bulk(store, None, phones(4))
    samples = parse(metrics.render(store).decode())
    waiting = {
        kind: value(samples, "textwire_outbox_waiting", kind=kind)
        for kind in ("scheduled", "held", "bulk")
    }
    assert waiting == {"scheduled": 2, "held": 0, "bulk": 4}

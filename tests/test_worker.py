"""The send worker on SQLite and PostgreSQL: one message per row, safe retries,
backoff, permanent failures and opt-outs, reconciliation of unclear sends, lease
takeover, per-phone order, thread pool, the real Twilio client, run_forever.

Time is stepped with ``run_once(now=...)``; nothing sleeps.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from textwire.codes import describe
from textwire.config import Settings
from textwire.errors import (
    AmbiguousSendError,
    PermanentSendError,
    RateLimited,
    SendError,
    TemporarySendError,
)
from textwire.service import queue_message
from textwire.storage.sql import SqlStore
from textwire.transports.base import OutboundMessage, SendReceipt, Transport
from textwire.transports.fake import FakeTransport
from textwire.transports.twilio import TwilioTransport
from textwire.worker import SendWorker, compute_backoff

from .conftest import ACCOUNT_SID, BOT_NUMBER, PUBLIC_URL, TwilioAPI

# In the past on purpose: FakeTransport stamps its records with the real clock,
# and reconciliation only looks at records made after the first attempt.
NOW = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
PHONE = "+14155550199"
MEDIA = (
    "https://bot.example.com/media/a.jpg",
    "https://bot.example.com/media/b.png",
)
SETTINGS = Settings(
    backoff_base=2.0,
    backoff_cap=300.0,
    max_send_attempts=3,
    worker_concurrency=1,
    lease_seconds=60,
    rate_limit=False,  # pacing has its own tests (test_ratelimit.py)
)
TICK = timedelta(milliseconds=1)


# -- helpers -------------------------------------------------------------------


def queue(
    store: SqlStore,
    *,
    to: str = PHONE,
    body: str = "hi",
    media: tuple[str, ...] = MEDIA,
    now: datetime = NOW,
) -> int:
    with store.begin() as conn:
        return store.outbox.enqueue(
            conn,
            to=to,
            body=body,
            media=list(media),
            from_=BOT_NUMBER,
            messaging_service_sid=None,
            now=now,
        )


def row(store: SqlStore, outbox_id: int) -> dict[str, Any]:
    found = store.outbox.row(outbox_id)
    assert found is not None, f"outbox row {outbox_id} missing"
    return found


def after(seconds: float, start: datetime = NOW) -> datetime:
    return start + timedelta(seconds=seconds)


def opted_out(store: SqlStore, phone: str) -> bool:
    with store.begin() as conn:
        return store.contacts.ensure(conn, phone, NOW)


class Scripted:
    """A FakeTransport responder: raises the given errors in turn, then accepts.

    Unlike ``fail_next``, every call is counted, including the failed ones.
    """

    def __init__(self, *errors: SendError) -> None:
        self.errors = list(errors)
        self.calls: list[OutboundMessage] = []

    def __call__(self, message: OutboundMessage) -> SendReceipt:
        self.calls.append(message)
        if self.errors:
            raise self.errors.pop(0)
        return SendReceipt(sid=f"SM{len(self.calls):032x}", status="queued")


MakeWorker = Callable[..., SendWorker]


@pytest.fixture
def fake() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def make_worker(store: SqlStore, fake: FakeTransport) -> Iterator[MakeWorker]:
    """SendWorkers on ``store`` with deterministic jitter; stopped afterwards."""
    workers: list[SendWorker] = []

    def make(
        transport: Transport | None = None,
        settings: Settings = SETTINGS,
        worker_id: str | None = None,
    ) -> SendWorker:
        worker = SendWorker(
            store,
            transport if transport is not None else fake,
            settings=settings,
            worker_id=worker_id or f"worker-{len(workers)}",
            rng=random.Random(0),
        )
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.stop()


# -- 1. one row, one message ---------------------------------------------------


def test_reply_with_text_and_two_media_is_sent_as_one_message(
    store: SqlStore, fake: FakeTransport, make_worker: MakeWorker
) -> None:
    # Given a reply queued with a national-format number, text and two pictures
    settings = SETTINGS.replace(twilio_phone_number=BOT_NUMBER)
    (outbox_id,) = queue_message(
        store,
        to="(415) 555-0199",
        body="Here are your tickets",
        media=MEDIA,
        settings=settings,
        now=NOW,
    )
    worker = make_worker()

    # When the worker runs
    assert worker.run_once(now=NOW) == 1

    # Then exactly one message went out, carrying everything
    assert fake.sent == [
        OutboundMessage(
            to=PHONE,
            body="Here are your tickets",
            media=MEDIA,
            from_=BOT_NUMBER,
            messaging_service_sid=None,
            outbox_id=outbox_id,
        )
    ]
    (receipt,) = fake.receipts
    assert receipt.sid.startswith("SM") and len(receipt.sid) == 34
    r = row(store, outbox_id)
    assert r["status"] == "sent"
    assert r["sid"] == receipt.sid
    assert r["attempts"] == 1
    assert r["last_error"] is None and r["last_error_code"] is None
    assert r["message_status"] == "queued"
    (message,) = store.messages.all("outbound")
    assert message["sid"] == receipt.sid
    assert message["sent_at"] == NOW
    assert store.outbox.depth() == 0

    # And running again, even much later, sends nothing more
    assert worker.run_once(now=after(3600)) == 0
    assert len(fake.sent) == 1


def test_nothing_is_sent_before_the_row_is_due(
    store: SqlStore, fake: FakeTransport, make_worker: MakeWorker
) -> None:
    outbox_id = queue(store, now=after(10))
    worker = make_worker()
    assert worker.run_once(now=after(10) - TICK) == 0
    assert fake.sent == []
    assert row(store, outbox_id)["status"] == "queued"
    assert worker.run_once(now=after(10)) == 1
    assert [m.outbox_id for m in fake.sent] == [outbox_id]


# -- 2. temporary errors and backoff -------------------------------------------


def test_temporary_error_is_retried_after_backoff(
    store: SqlStore, fake: FakeTransport, make_worker: MakeWorker
) -> None:
    # Given Twilio is briefly unavailable
    fake.fail_next(TemporarySendError("Twilio answered HTTP 503; retry later"))
    outbox_id = queue(store)
    worker = make_worker()

    # When the first attempt fails
    assert worker.run_once(now=NOW) == 1

    # Then the row waits base/2..base seconds (exactly the seeded draw)
    r = row(store, outbox_id)
    assert r["status"] == "queued"
    assert r["attempts"] == 1
    assert r["sid"] is None
    assert r["last_error"] == "Twilio answered HTTP 503; retry later"
    assert r["message_status"] == "pending"
    delay = (r["next_attempt_at"] - NOW).total_seconds()
    assert 1.0 <= delay <= 2.0
    expected = compute_backoff(1, base=2.0, cap=300.0, rng=random.Random(0))
    assert delay == pytest.approx(expected, abs=1e-6)
    assert fake.sent == []

    # When the worker runs just before that time, nothing is sent
    assert worker.run_once(now=r["next_attempt_at"] - TICK) == 0
    assert fake.sent == []

    # When it runs at that time, the retry succeeds
    assert worker.run_once(now=r["next_attempt_at"]) == 1
    (sent,) = fake.sent
    assert sent.outbox_id == outbox_id
    r = row(store, outbox_id)
    assert (r["status"], r["attempts"], r["sid"]) == ("sent", 2, fake.receipts[0].sid)
    assert r["message_status"] == "queued"


def test_backoff_grows_exponentially_across_attempts(
    store: SqlStore, fake: FakeTransport, make_worker: MakeWorker
) -> None:
    fake.fail_next(TemporarySendError("connection refused"), times=2)
    outbox_id = queue(store)
    worker = make_worker()

    assert worker.run_once(now=NOW) == 1
    first_retry = row(store, outbox_id)["next_attempt_at"]
    first_delay = (first_retry - NOW).total_seconds()

    assert worker.run_once(now=first_retry) == 1
    r = row(store, outbox_id)
    assert (r["status"], r["attempts"]) == ("queued", 2)
    second_retry = r["next_attempt_at"]
    second_delay = (second_retry - first_retry).total_seconds()

    # base=2: first in [1, 2], second in [2, 4]
    assert 1.0 <= first_delay <= 2.0
    assert 2.0 <= second_delay <= 4.0
    assert fake.sent == []

    assert worker.run_once(now=second_retry - TICK) == 0
    assert worker.run_once(now=second_retry) == 1
    r = row(store, outbox_id)
    assert (r["status"], r["attempts"]) == ("sent", 3)
    assert len(fake.sent) == 1


def test_backoff_is_capped(
    store: SqlStore, fake: FakeTransport, make_worker: MakeWorker
) -> None:
    # base 100 s doubled would be 200 s; the cap of 150 s wins (jitter: 75..150)
    settings = SETTINGS.replace(
        backoff_base=100.0, backoff_cap=150.0, max_send_attempts=5
    )
    fake.fail_next(TemporarySendError("down"), times=2)
    outbox_id = queue(store)
    worker = make_worker(settings=settings)
    worker.run_once(now=NOW)
    first_retry = row(store, outbox_id)["next_attempt_at"]
    assert 50.0 <= (first_retry - NOW).total_seconds() <= 100.0
    worker.run_once(now=first_retry)
    second_delay = (row(store, outbox_id)["next_attempt_at"] - first_retry).seconds
    assert 75 <= second_delay <= 150


# -- 3. rate limits ------------------------------------------------------------


def test_retry_after_wins_over_backoff(
    store: SqlStore, fake: FakeTransport, make_worker: MakeWorker
) -> None:
    fake.fail_next(RateLimited("Too Many Requests", retry_after=7, code=20429))
    outbox_id = queue(store)
    worker = make_worker()

    assert worker.run_once(now=NOW) == 1

    r = row(store, outbox_id)
    assert r["status"] == "queued"
    assert r["next_attempt_at"] == after(7)
    assert r["last_error_code"] == 20429
    assert r["attempts"] == 1
    assert worker.run_once(now=after(7) - TICK) == 0
    assert fake.sent == []
    assert worker.run_once(now=after(7)) == 1
    assert len(fake.sent) == 1
    assert row(store, outbox_id)["status"] == "sent"


def test_rate_limited_without_retry_after_uses_backoff(
    store: SqlStore, fake: FakeTransport, make_worker: MakeWorker
) -> None:
    fake.fail_next(RateLimited("Too Many Requests", retry_after=None, code=20429))
    outbox_id = queue(store)
    worker = make_worker()

    worker.run_once(now=NOW)

    r = row(store, outbox_id)
    delay = (r["next_attempt_at"] - NOW).total_seconds()
    assert 1.0 <= delay <= 2.0
    expected = compute_backoff(1, base=2.0, cap=300.0, rng=random.Random(0))
    assert delay == pytest.approx(expected, abs=1e-6)
    assert r["status"] == "queued" and r["last_error_code"] == 20429


# -- 4. max attempts -----------------------------------------------------------


def test_gives_up_after_max_attempts(store: SqlStore, make_worker: MakeWorker) -> None:
    # Given Twilio fails every request
    errors = [TemporarySendError("Twilio answered HTTP 503; retry later")] * 10
    responder = Scripted(*errors)
    fake = FakeTransport(responder)
    outbox_id = queue(store)
    worker = make_worker(transport=fake)

    # When the worker tries three times (max_send_attempts=3)
    moment = NOW
    for attempt in (1, 2):
        assert worker.run_once(now=moment) == 1
        r = row(store, outbox_id)
        assert (r["status"], r["attempts"]) == ("queued", attempt)
        moment = r["next_attempt_at"]
    assert worker.run_once(now=moment) == 1

    # Then the row is failed with a readable reason
    r = row(store, outbox_id)
    assert r["status"] == "failed"
    assert r["attempts"] == 3
    assert "gave up after 3 attempts" in r["last_error"]
    assert "HTTP 503" in r["last_error"]
    assert r["message_status"] == "failed"
    (message,) = store.messages.all("outbound")
    assert message["error_message"] == r["last_error"]
    assert store.outbox.depth() == 0

    # And no fourth request is ever made
    assert worker.run_once(now=after(86400)) == 0
    assert len(responder.calls) == 3
    assert fake.sent == []


# -- 5. permanent errors and opt-out -------------------------------------------


def test_permanent_error_fails_at_once(
    store: SqlStore, make_worker: MakeWorker
) -> None:
    responder = Scripted(PermanentSendError(describe(21211), code=21211, status=400))
    fake = FakeTransport(responder)
    outbox_id = queue(store)
    worker = make_worker(transport=fake)

    assert worker.run_once(now=NOW) == 1

    r = row(store, outbox_id)
    assert r["status"] == "failed"
    assert r["attempts"] == 1
    assert r["last_error_code"] == 21211
    assert r["last_error"] == describe(21211)
    assert r["message_status"] == "failed"
    (message,) = store.messages.all("outbound")
    assert message["error_code"] == 21211
    assert worker.run_once(now=after(86400)) == 0
    assert len(responder.calls) == 1
    assert fake.sent == []
    # 21211 is not an opt-out
    assert opted_out(store, PHONE) is False


def test_unknown_permanent_code_is_described(
    store: SqlStore, make_worker: MakeWorker
) -> None:
    fake = FakeTransport(Scripted(PermanentSendError("refused", code=29999)))
    outbox_id = queue(store)
    make_worker(transport=fake).run_once(now=NOW)
    r = row(store, outbox_id)
    assert r["status"] == "failed" and r["last_error_code"] == 29999
    assert r["last_error"].startswith("refused (")
    assert "29999" in r["last_error"]


def test_21610_opts_the_contact_out(store: SqlStore, make_worker: MakeWorker) -> None:
    other = "+14155550177"
    responder = Scripted(PermanentSendError(describe(21610), code=21610, status=400))
    fake = FakeTransport(responder)
    outbox_id = queue(store)
    assert opted_out(store, PHONE) is False

    make_worker(transport=fake).run_once(now=NOW)

    r = row(store, outbox_id)
    assert (r["status"], r["last_error_code"]) == ("failed", 21610)
    assert len(responder.calls) == 1
    assert opted_out(store, PHONE) is True
    assert opted_out(store, other) is False


# -- 6. ambiguous sends and reconciliation -------------------------------------


def test_ambiguous_send_that_reached_twilio_is_adopted_not_resent(
    store: SqlStore, fake: FakeTransport, make_worker: MakeWorker
) -> None:
    # Given the request reached Twilio but its answer was lost
    fake.fail_next(AmbiguousSendError("read timeout"), delivered=True)
    outbox_id = queue(store, body="Your order shipped")
    worker = make_worker()

    assert worker.run_once(now=NOW) == 1

    # Then the row is "unknown", not queued: it must be reconciled first
    r = row(store, outbox_id)
    assert (r["status"], r["attempts"], r["sid"]) == ("unknown", 1, None)
    assert r["last_error"] == "read timeout"
    assert store.outbox.depth() == 1
    assert len(fake.sent) == 1
    twilio_sid = fake.receipts[0].sid

    # When the worker comes back to it
    assert worker.run_once(now=after(60)) == 1

    # Then Twilio's copy is adopted and nothing is sent again
    assert len(fake.sent) == 1
    r = row(store, outbox_id)
    assert (r["status"], r["attempts"], r["sid"]) == ("sent", 2, twilio_sid)
    assert r["message_status"] == "queued"
    (message,) = store.messages.all("outbound")
    assert message["sid"] == twilio_sid
    assert worker.run_once(now=after(3600)) == 0
    assert len(fake.sent) == 1


def test_ambiguous_send_that_never_arrived_is_sent_again(
    store: SqlStore, fake: FakeTransport, make_worker: MakeWorker
) -> None:
    fake.fail_next(AmbiguousSendError("connection reset"), delivered=False)
    outbox_id = queue(store, body="Your order shipped")
    worker = make_worker()

    assert worker.run_once(now=NOW) == 1
    assert row(store, outbox_id)["status"] == "unknown"
    assert fake.sent == []

    # Reconciliation finds nothing at Twilio, so the message is sent once more
    assert worker.run_once(now=after(60)) == 1
    (sent,) = fake.sent
    assert (sent.outbox_id, sent.body, sent.media) == (
        outbox_id,
        "Your order shipped",
        MEDIA,
    )
    r = row(store, outbox_id)
    assert (r["status"], r["attempts"], r["sid"]) == ("sent", 2, fake.receipts[0].sid)


def test_never_confirmed_gives_up_after_max_attempts(
    store: SqlStore, make_worker: MakeWorker
) -> None:
    # Every request times out without reaching Twilio.
    responder = Scripted(*[AmbiguousSendError("read timeout")] * 10)
    fake = FakeTransport(responder)
    outbox_id = queue(store)
    worker = make_worker(transport=fake)

    moment = NOW
    for attempt in (1, 2, 3):
        assert worker.run_once(now=moment) == 1
        r = row(store, outbox_id)
        assert (r["status"], r["attempts"]) == ("unknown", attempt)
        moment = r["next_attempt_at"]
    # The fourth claim only reconciles (finds nothing) and gives up unsent.
    assert worker.run_once(now=moment) == 1
    r = row(store, outbox_id)
    assert r["status"] == "failed"
    assert "never confirmed" in r["last_error"]
    assert r["message_status"] == "failed"
    assert len(responder.calls) == 3
    assert worker.run_once(now=after(86400)) == 0
    assert len(responder.calls) == 3


def test_reconciliation_failure_keeps_the_row_unknown(
    store: SqlStore, make_worker: MakeWorker
) -> None:
    class ListingDown(FakeTransport):
        def find_sent(self, **kwargs: Any) -> Any:
            raise TemporarySendError("listing failed")

    fake = ListingDown()
    fake.fail_next(AmbiguousSendError("read timeout"), delivered=True)
    outbox_id = queue(store)
    worker = make_worker(transport=fake)
    worker.run_once(now=NOW)

    # Listing fails: the row must not be sent blind.
    assert worker.run_once(now=after(60)) == 1
    r = row(store, outbox_id)
    assert (r["status"], r["last_error"]) == ("unknown", "listing failed")
    assert len(fake.sent) == 1


# -- 7. no adopting another row's SID ------------------------------------------


def test_reconciliation_does_not_adopt_another_rows_sid(
    store: SqlStore, fake: FakeTransport, make_worker: MakeWorker
) -> None:
    # Given two identical texts to one phone
    first = queue(store, body="Reminder: appointment at 3pm")
    second = queue(store, body="Reminder: appointment at 3pm")
    worker = make_worker()

    # The first goes out normally (the second waits its turn)
    assert worker.run_once(now=NOW) == 1
    first_sid = row(store, first)["sid"]
    assert first_sid == fake.receipts[0].sid

    # The second's answer is lost, and it never reached Twilio
    fake.fail_next(AmbiguousSendError("read timeout"), delivered=False)
    assert worker.run_once(now=NOW) == 1
    assert row(store, second)["status"] == "unknown"
    assert len(fake.sent) == 1
    # Twilio does list a matching message in the window: the first one
    listed = fake.find_sent(to=PHONE, from_=BOT_NUMBER, since=NOW - timedelta(1))
    assert [record.sid for record in listed] == [first_sid]

    # When the second is reconciled, it is not matched to the first's SID
    assert worker.run_once(now=after(60)) == 1
    assert len(fake.sent) == 2
    assert [m.outbox_id for m in fake.sent] == [first, second]
    second_row = row(store, second)
    assert second_row["status"] == "sent"
    assert second_row["sid"] == fake.receipts[1].sid != first_sid
    assert row(store, first)["sid"] == first_sid


# -- 8. a worker that dies mid-send --------------------------------------------


def test_dead_workers_row_is_taken_over_after_the_lease(
    store: SqlStore, fake: FakeTransport, make_worker: MakeWorker
) -> None:
    # Given a worker claimed the row and died before finishing it
    outbox_id = queue(store)
    (claimed,) = store.outbox.claim(NOW, limit=1, worker_id="dead", lease=LEASE)
    worker = make_worker()

    # While its lease runs (up to and including its expiry), nobody touches it
    assert worker.run_once(now=after(30)) == 0
    assert worker.run_once(now=after(60)) == 0
    assert fake.sent == []
    assert row(store, outbox_id)["status"] == "sending"

    # After it, the row is reconciled (Twilio has nothing) and sent once
    assert worker.run_once(now=after(61)) == 1
    assert [m.outbox_id for m in fake.sent] == [outbox_id]
    r = row(store, outbox_id)
    assert (r["status"], r["attempts"], r["sid"]) == ("sent", 2, fake.receipts[0].sid)

    # And the dead worker's late answer is dropped
    assert not store.outbox.mark_sent(
        claimed, "dead", sid="SM" + "d" * 32, status="queued", num_segments=1, now=NOW
    )
    assert row(store, outbox_id)["sid"] == fake.receipts[0].sid
    assert worker.run_once(now=after(3600)) == 0
    assert len(fake.sent) == 1


@pytest.mark.parametrize(
    ("body", "media", "adopted"),
    [
        ("Your code is 1234", MEDIA, True),
        ("Your code is 9999", MEDIA, False),
        ("Your code is 1234", MEDIA[:1], False),
    ],
    ids=["same-message", "other-body", "other-media-count"],
)
def test_dead_workers_send_found_at_twilio_is_adopted(
    store: SqlStore,
    fake: FakeTransport,
    make_worker: MakeWorker,
    body: str,
    media: tuple[str, ...],
    adopted: bool,
) -> None:
    # Given the dead worker's request had reached Twilio before it died
    outbox_id = queue(store, body="Your code is 1234")
    store.outbox.claim(NOW, limit=1, worker_id="dead", lease=LEASE)
    planted = fake.send(
        OutboundMessage(
            to=PHONE, body=body, media=media, from_=BOT_NUMBER, outbox_id=outbox_id
        )
    )
    worker = make_worker()

    # When a new worker takes the row over
    assert worker.run_once(now=after(61)) == 1

    r = row(store, outbox_id)
    assert r["status"] == "sent"
    if adopted:
        # Then Twilio's message is adopted: no second send
        assert len(fake.sent) == 1
        assert r["sid"] == planted.sid
    else:
        # Then a different message is not taken for this one
        assert len(fake.sent) == 2
        assert r["sid"] == fake.receipts[1].sid != planted.sid
        assert fake.sent[1].body == "Your code is 1234"


# -- 9. order per phone --------------------------------------------------------


def test_parts_to_one_phone_go_out_one_per_run_in_order(
    store: SqlStore, fake: FakeTransport, make_worker: MakeWorker
) -> None:
    settings = SETTINGS.replace(worker_concurrency=4, worker_batch_size=10)
    ids = [queue(store, body=f"part {n}") for n in (1, 2, 3)]
    worker = make_worker(settings=settings)

    for step in (1, 2, 3):
        # Each run sends only the next part: the later ones wait for it
        assert worker.run_once(now=NOW) == 1
        assert [m.body for m in fake.sent] == [f"part {n}" for n in range(1, step + 1)]
        assert row(store, ids[step - 1])["status"] == "sent"
    assert worker.run_once(now=NOW) == 0
    assert [m.outbox_id for m in fake.sent] == ids


def test_two_phones_progress_together_each_in_order(
    store: SqlStore, fake: FakeTransport, make_worker: MakeWorker
) -> None:
    settings = SETTINGS.replace(worker_concurrency=4, worker_batch_size=10)
    alice, bob = "+14155550111", "+14155550122"
    for n in (1, 2, 3):
        queue(store, to=alice, body=f"alice {n}")
        queue(store, to=bob, body=f"bob {n}")
    worker = make_worker(settings=settings)

    def bodies(phone: str) -> list[str]:
        return [m.body for m in fake.sent if m.to == phone]

    for step in (1, 2, 3):
        # Both phones get their next part in the same run
        assert worker.run_once(now=NOW) == 2
        assert bodies(alice) == [f"alice {n}" for n in range(1, step + 1)]
        assert bodies(bob) == [f"bob {n}" for n in range(1, step + 1)]
    assert worker.run_once(now=NOW) == 0
    assert len(fake.sent) == 6


def test_a_retrying_part_holds_back_the_later_parts(
    store: SqlStore, fake: FakeTransport, make_worker: MakeWorker
) -> None:
    first = queue(store, body="part 1")
    second = queue(store, body="part 2")
    fake.fail_next(TemporarySendError("HTTP 503"))
    worker = make_worker()

    assert worker.run_once(now=NOW) == 1
    retry_at = row(store, first)["next_attempt_at"]
    # Part 2 is due but must not overtake part 1
    assert worker.run_once(now=retry_at - TICK) == 0
    assert fake.sent == []
    assert row(store, second)["status"] == "queued"

    assert worker.run_once(now=retry_at) == 1
    assert worker.run_once(now=retry_at) == 1
    assert [m.body for m in fake.sent] == ["part 1", "part 2"]


def test_a_failed_part_does_not_block_the_next(
    store: SqlStore, make_worker: MakeWorker
) -> None:
    responder = Scripted(PermanentSendError("blocked", code=30007))
    fake = FakeTransport(responder)
    first = queue(store, body="part 1")
    second = queue(store, body="part 2")
    worker = make_worker(transport=fake)

    worker.run_once(now=NOW)
    worker.run_once(now=NOW)

    assert row(store, first)["status"] == "failed"
    assert row(store, second)["status"] == "sent"
    assert [m.body for m in responder.calls] == ["part 1", "part 2"]


# -- 10. thread pool -----------------------------------------------------------


def test_thread_pool_sends_each_row_exactly_once(
    store: SqlStore, fake: FakeTransport, make_worker: MakeWorker
) -> None:
    ids = [queue(store, to=f"+1415555{n:04d}", body=f"hello {n}") for n in range(30)]
    worker = make_worker(settings=SETTINGS.replace(worker_concurrency=4))

    batches = []
    while processed := worker.run_once(now=NOW):
        batches.append(processed)
        assert len(batches) <= 30, "worker never ran dry"

    assert batches == [20, 10]  # default batch size 20
    sent_ids = [m.outbox_id for m in fake.sent]
    assert len(sent_ids) == 30
    assert Counter(sent_ids) == Counter(ids)  # no duplicates, none missing
    sids = {receipt.sid for receipt in fake.receipts}
    assert len(sids) == 30
    assert {row(store, i)["sid"] for i in ids} == sids
    assert {row(store, i)["status"] for i in ids} == {"sent"}


def test_two_workers_racing_send_each_row_once(
    store: SqlStore, fake: FakeTransport, make_worker: MakeWorker
) -> None:
    ids = [queue(store, to=f"+1415556{n:04d}", body=f"hi {n}") for n in range(30)]
    settings = SETTINGS.replace(worker_concurrency=4, worker_batch_size=3)
    workers = [make_worker(settings=settings, worker_id=f"w{n}") for n in (1, 2)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def drain(worker: SendWorker) -> None:
        try:
            barrier.wait(timeout=10)
            for _ in range(100):
                if worker.run_once(now=NOW) == 0:
                    return
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert Counter(m.outbox_id for m in fake.sent) == Counter(ids)
    assert {row(store, i)["status"] for i in ids} == {"sent"}


# -- 11. the real Twilio client against a local server -------------------------


@pytest.fixture
def twilio_worker(
    store: SqlStore, transport: TwilioTransport, make_worker: MakeWorker
) -> SendWorker:
    return make_worker(transport=transport)


@pytest.fixture
def reply_id(store: SqlStore, settings: Settings) -> int:
    (outbox_id,) = queue_message(
        store,
        to=PHONE,
        body="Here is your receipt",
        media=MEDIA,
        settings=settings,
        now=NOW,
    )
    return outbox_id


def test_twilio_one_post_with_everything(
    store: SqlStore, twilio_api: TwilioAPI, twilio_worker: SendWorker, reply_id: int
) -> None:
    assert twilio_worker.run_once(now=NOW) == 1

    (create,) = twilio_api.creates
    assert create["path"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert create["auth"] == ACCOUNT_SID
    form = create["form"]
    assert form["To"] == [PHONE]
    assert form["From"] == [BOT_NUMBER]
    assert form["Body"] == ["Here is your receipt"]
    assert form["MediaUrl"] == list(MEDIA)
    assert form["StatusCallback"] == [f"{PUBLIC_URL}/twilio/status?outbox={reply_id}"]
    assert "MessagingServiceSid" not in form
    r = row(store, reply_id)
    assert r["status"] == "sent"
    assert re.fullmatch(r"SM[0-9a-f]{32}", r["sid"])
    assert r["message_status"] == "queued"
    assert twilio_worker.run_once(now=after(60)) == 0
    assert len(twilio_api.creates) == 1


def test_twilio_429_waits_for_retry_after(
    store: SqlStore, twilio_api: TwilioAPI, twilio_worker: SendWorker, reply_id: int
) -> None:
    twilio_api.failures.append(
        (
            429,
            {
                "code": 20429,
                "message": "Too Many Requests",
                "more_info": "",
                "status": 429,
            },
            {"Retry-After": "5"},
        )
    )

    assert twilio_worker.run_once(now=NOW) == 1

    r = row(store, reply_id)
    assert (r["status"], r["last_error_code"]) == ("queued", 20429)
    assert r["next_attempt_at"] == after(5)
    assert len(twilio_api.creates) == 1
    assert twilio_worker.run_once(now=after(5) - TICK) == 0
    assert len(twilio_api.creates) == 1
    assert twilio_worker.run_once(now=after(5)) == 1
    assert len(twilio_api.creates) == 2
    r = row(store, reply_id)
    assert (r["status"], r["attempts"]) == ("sent", 2)
    assert re.fullmatch(r"SM[0-9a-f]{32}", r["sid"])


def test_twilio_500_is_retried(
    store: SqlStore, twilio_api: TwilioAPI, twilio_worker: SendWorker, reply_id: int
) -> None:
    twilio_api.failures.append(
        (
            500,
            {
                "code": 20500,
                "message": "Internal Server Error",
                "more_info": "",
                "status": 500,
            },
            {},
        )
    )

    assert twilio_worker.run_once(now=NOW) == 1

    r = row(store, reply_id)
    assert r["status"] == "queued"
    assert "HTTP 500" in r["last_error"]
    delay = (r["next_attempt_at"] - NOW).total_seconds()
    assert 1.0 <= delay <= 2.0
    assert twilio_worker.run_once(now=r["next_attempt_at"]) == 1
    assert len(twilio_api.creates) == 2
    assert row(store, reply_id)["status"] == "sent"


def test_twilio_400_invalid_number_fails_with_one_post(
    store: SqlStore, twilio_api: TwilioAPI, twilio_worker: SendWorker, reply_id: int
) -> None:
    twilio_api.failures.append(
        (
            400,
            {
                "code": 21211,
                "message": f"The 'To' number {PHONE} is not a valid phone number.",
                "more_info": "https://www.twilio.com/docs/errors/21211",
                "status": 400,
            },
            {},
        )
    )

    assert twilio_worker.run_once(now=NOW) == 1

    r = row(store, reply_id)
    assert (r["status"], r["last_error_code"]) == ("failed", 21211)
    assert r["message_status"] == "failed"
    assert PHONE not in r["last_error"]  # Twilio's text quotes the number
    assert twilio_worker.run_once(now=after(86400)) == 0
    assert len(twilio_api.creates) == 1


# -- 12. run_forever and wake ----------------------------------------------------


class ObservedWorker(SendWorker):
    """Tells when a pass of run_forever found nothing to do."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle = threading.Event()

    def run_once(self, now: datetime | None = None, **kwargs: Any) -> int:
        processed = super().run_once(now, **kwargs)
        if processed == 0:
            self.idle.set()
        return processed


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until true or ``timeout`` seconds pass."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        pause.wait(0.02)
    return condition()


def test_run_forever_sends_when_woken(store: SqlStore, fake: FakeTransport) -> None:
    # A poll interval far beyond the wait below: only wake() can explain a send.
    settings = SETTINGS.replace(worker_poll_interval=600.0)
    worker = ObservedWorker(
        store, fake, settings=settings, worker_id="forever", rng=random.Random(0)
    )
    thread = worker.start()
    try:
        # Given the worker has found nothing to do and gone idle
        assert worker.idle.wait(10), "worker never went idle"
        # When a row is queued and the worker woken
        outbox_id = queue(store)
        worker.wake()
        # Then it is sent without waiting for the poll interval
        assert wait_for(lambda: row(store, outbox_id)["status"] == "sent"), (
            "row not sent within 10 s of wake()"
        )
    finally:
        worker.stop()
    assert not thread.is_alive()
    assert [m.outbox_id for m in fake.sent] == [outbox_id]
    assert row(store, outbox_id)["sid"] == fake.receipts[0].sid


def test_run_forever_keeps_sending_past_a_slow_send(store: SqlStore) -> None:
    # Given a worker with 4 sending threads, batches of 4, and 12 rows to 12
    # phones, the first of which Twilio takes forever to accept
    release = threading.Event()
    first = threading.Lock()
    slow: list[int] = []

    def respond(message: OutboundMessage) -> SendReceipt:
        with first:
            hang = not slow
            if hang:
                slow.append(message.outbox_id or 0)
        if hang:
            release.wait(10)
        return SendReceipt(sid=f"SM{message.outbox_id or 0:032x}", status="queued")

    fake = FakeTransport(responder=respond)
    ids = [queue(store, to=f"+1415555{1000 + i}") for i in range(12)]
    settings = SETTINGS.replace(worker_concurrency=4, worker_batch_size=4)
    worker = SendWorker(store, fake, settings=settings, worker_id="pipeline")
    worker.start()
    try:
        # Then the other 11 are sent while it hangs: the threads it leaves
        # free keep claiming, instead of waiting for its batch to finish
        assert wait_for(lambda: len(fake.sent) == 11), (
            f"only {len(fake.sent)} of 11 sent past a slow send"
        )
        assert slow and slow[0] not in [m.outbox_id for m in fake.sent]
    finally:
        release.set()
        worker.stop()
    # And every row is sent exactly once
    assert sorted(m.outbox_id for m in fake.sent) == ids
    assert all(row(store, i)["status"] == "sent" for i in ids)

"""Per-sender pacing shared through the database by every worker."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from textwire.config import Settings
from textwire.errors import RateLimited
from textwire.ratelimit import send_cost, sender_kind
from textwire.service import queue_message
from textwire.storage.sql import SqlStore
from textwire.transports.fake import FakeTransport
from textwire.worker import SendWorker

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LONG_CODE = "+14155550100"
TOLL_FREE = "+18005550100"


@pytest.mark.parametrize(
    ("sender", "kind"),
    [
        (LONG_CODE, "long_code"),
        ("+447911123456", "long_code"),
        (TOLL_FREE, "toll_free"),
        ("+18885550100", "toll_free"),
        ("89898", "short_code"),
        ("Textwire", "alphanumeric"),
        ("MG" + "a" * 32, "messaging_service"),
        ("whatsapp:+14155550100", "long_code"),
    ],
)
def test_sender_kind(sender: str, kind: str) -> None:
    assert sender_kind(sender) == kind


def test_send_cost_counts_segments() -> None:
    assert send_cost(LONG_CODE, 1) == 1.0
    assert send_cost(LONG_CODE, 3) == 3.0
    assert send_cost(TOLL_FREE, 1) == pytest.approx(1 / 3)
    assert send_cost("89898", 1) == pytest.approx(1 / 30)
    assert send_cost(LONG_CODE, 2, mps=4) == 0.5
    with pytest.raises(ValueError):
        send_cost(LONG_CODE, 1, mps=0)


def test_reserve_hands_out_consecutive_slots(store: SqlStore) -> None:
    now = T0.timestamp()
    assert store.rates.reserve("s", cost=1, now=now, max_wait=1) == (True, now)
    assert store.rates.reserve("s", cost=1, now=now, max_wait=1) == (True, now + 1)
    # The next free slot is 2 s away: more than the 1 s we are willing to wait.
    assert store.rates.reserve("s", cost=1, now=now, max_wait=1) == (False, now + 2)
    # Another sender is independent; an idle sender starts at "now" again.
    assert store.rates.reserve("t", cost=1, now=now, max_wait=1) == (True, now)
    assert store.rates.reserve("s", cost=1, now=now + 10, max_wait=1) == (
        True,
        now + 10,
    )


def test_concurrent_reservations_never_share_a_slot(store: SqlStore) -> None:
    now = T0.timestamp()
    starts: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def take() -> None:
        barrier.wait(timeout=10)
        for _ in range(5):
            ok, start = store.rates.reserve("s", cost=0.5, now=now, max_wait=1000)
            assert ok
            with lock:
                starts.append(start)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(starts) == [now + 0.5 * i for i in range(20)]


def test_slow_down_pushes_the_sender_back(store: SqlStore) -> None:
    now = T0.timestamp()
    store.rates.slow_down("s", until=now + 5)
    assert store.rates.reserve("s", cost=1, now=now, max_wait=1) == (False, now + 5)
    store.rates.slow_down("s", until=now + 2)  # never pulls it forward
    assert store.rates.reserve("s", cost=1, now=now + 5, max_wait=1) == (True, now + 5)


@pytest.fixture
def paced(store: SqlStore) -> tuple[SendWorker, FakeTransport, list[float], Settings]:
    settings = Settings(
        twilio_phone_number=LONG_CODE,
        worker_concurrency=1,
        rate_limit=True,
        rate_limit_max_wait=1.0,
    )
    sleeps: list[float] = []
    fake = FakeTransport()
    worker = SendWorker(store, fake, settings=settings, sleep=sleeps.append)
    return worker, fake, sleeps, settings


def test_worker_paces_a_long_code_at_one_segment_per_second(
    store: SqlStore,
    paced: tuple[SendWorker, FakeTransport, list[float], Settings],
) -> None:
    worker, fake, sleeps, settings = paced
    ids = [
        queue_message(
            store, to=f"+1415555{i:04d}", body="hi", settings=settings, now=T0
        )[0]
        for i in range(3)
    ]
    # All three are due; the long code allows one a second: the claim takes
    # the two whose slots are within a second, and puts the third off.
    assert worker.run_once(now=T0) == 2
    assert len(fake.sent) == 2
    assert sleeps == [1.0]  # the second waited its slot
    third = store.outbox.row(ids[2])
    assert third is not None
    assert third["status"] == "queued" and third["attempts"] == 0
    assert third["next_attempt_at"] == T0 + timedelta(seconds=2)
    assert worker.run_once(now=T0 + timedelta(seconds=1)) == 0
    assert worker.run_once(now=T0 + timedelta(seconds=2)) == 1
    assert len(fake.sent) == 3
    worker.stop()


def test_a_long_message_costs_its_segments(
    store: SqlStore,
    paced: tuple[SendWorker, FakeTransport, list[float], Settings],
) -> None:
    worker, fake, sleeps, settings = paced
    queue_message(store, to="+14155550001", body="x" * 400, settings=settings, now=T0)
    (second,) = queue_message(
        store, to="+14155550002", body="next", settings=settings, now=T0
    )
    worker.run_once(now=T0)
    # 400 GSM-7 characters are 3 segments: the sender is busy for 3 s.
    row = store.outbox.row(second)
    assert row is not None and row["next_attempt_at"] == T0 + timedelta(seconds=3)
    assert len(fake.sent) == 1
    worker.stop()


def test_a_429_slows_the_sender_for_every_row(
    store: SqlStore,
    paced: tuple[SendWorker, FakeTransport, list[float], Settings],
) -> None:
    worker, fake, sleeps, settings = paced
    fake.fail_next(RateLimited("slow down", retry_after=5))
    (first,) = queue_message(
        store, to="+14155550001", body="a", settings=settings, now=T0
    )
    worker.run_once(now=T0)
    (second,) = queue_message(
        store, to="+14155550002", body="b", settings=settings, now=T0
    )
    worker.run_once(now=T0 + timedelta(seconds=1))
    row = store.outbox.row(second)
    assert row is not None and row["status"] == "queued"
    assert row["next_attempt_at"] == T0 + timedelta(seconds=5)
    assert fake.sent == []
    # At +5 s both are due: one goes at once, the other waits its 1 s slot.
    worker.run_once(now=T0 + timedelta(seconds=5))
    assert [m.body for m in fake.sent] == ["a", "b"]
    assert sleeps == [1.0]
    assert {store.outbox.row(i)["status"] for i in (first, second)} == {"sent"}  # type: ignore[index]
    worker.stop()

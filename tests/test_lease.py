"""A batch that outlives its lease: renewed if still ours, never sent if not."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from textwire.config import Settings
from textwire.service import queue_message
from textwire.storage.schema import OutboxItem
from textwire.storage.sql import ClaimedItem, SqlStore
from textwire.transports.fake import FakeTransport
from textwire.worker import SendWorker

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SETTINGS = Settings(
    twilio_phone_number="+14155550100",
    worker_concurrency=1,
    lease_seconds=60,
    rate_limit=False,
)


class SlowClock:
    """time.monotonic as seen by a worker whose batch took ``elapsed`` seconds."""

    def __init__(self, elapsed: float) -> None:
        self.calls = 0
        self.elapsed = elapsed

    def __call__(self) -> float:
        self.calls += 1
        return 0.0 if self.calls == 1 else self.elapsed


@pytest.fixture
def worker(store: SqlStore) -> Iterator[tuple[SendWorker, FakeTransport]]:
    fake = FakeTransport()
    worker = SendWorker(store, fake, settings=SETTINGS, worker_id="slow")
    yield worker, fake
    worker.stop()


def take_over_after_claim(store: SqlStore, other: str) -> None:
    """Make every row this claim returns another worker's, as if its lease ran out."""
    claim = store.outbox.claim

    def claim_then_lose(*args: object, **kwargs: object) -> list[ClaimedItem]:
        items = claim(*args, **kwargs)  # type: ignore[arg-type]
        with store.begin() as conn:
            conn.execute(
                update(OutboxItem)
                .where(OutboxItem.id.in_([i.id for i in items]))
                .values(claimed_by=other)
            )
        return items

    store.outbox.claim = claim_then_lose  # type: ignore[method-assign]


def test_a_row_taken_over_during_a_slow_batch_is_not_sent(
    store: SqlStore, worker: tuple[SendWorker, FakeTransport]
) -> None:
    send_worker, fake = worker
    (outbox_id,) = queue_message(
        store, to="+14155550199", body="hi", settings=SETTINGS, now=T0
    )
    send_worker._monotonic = SlowClock(elapsed=45)  # more than half the lease
    take_over_after_claim(store, "other-worker")
    send_worker.run_once(now=T0)
    assert fake.sent == []
    row = store.outbox.row(outbox_id)
    assert row is not None and row["status"] == "sending"  # the other worker's now


def test_a_slow_batch_renews_its_lease_and_sends(
    store: SqlStore, worker: tuple[SendWorker, FakeTransport]
) -> None:
    send_worker, fake = worker
    (outbox_id,) = queue_message(
        store, to="+14155550199", body="hi", settings=SETTINGS, now=T0
    )
    send_worker._monotonic = SlowClock(elapsed=45)
    send_worker.run_once(now=T0)
    assert [m.outbox_id for m in fake.sent] == [outbox_id]
    row = store.outbox.row(outbox_id)
    assert row is not None and row["status"] == "sent"


def test_renew_lease_only_for_the_owner(store: SqlStore) -> None:
    queue_message(store, to="+14155550199", body="hi", settings=SETTINGS, now=T0)
    (item,) = store.outbox.claim(
        T0, limit=1, worker_id="a", lease=timedelta(seconds=60)
    )
    assert store.outbox.renew_lease(item, "a", now=T0, lease=timedelta(seconds=60))
    assert not store.outbox.renew_lease(item, "b", now=T0, lease=timedelta(seconds=60))
    # Renewed at T0 + 50 s: another worker cannot take it at T0 + 61 s
    store.outbox.renew_lease(
        item, "a", now=T0 + timedelta(seconds=50), lease=timedelta(seconds=60)
    )
    assert (
        store.outbox.claim(
            T0 + timedelta(seconds=61),
            limit=1,
            worker_id="b",
            lease=timedelta(seconds=60),
        )
        == []
    )

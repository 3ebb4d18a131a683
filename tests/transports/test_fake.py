"""FakeTransport: a real in-memory transport for tests and local runs."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest

from textwire.errors import (
    AmbiguousSendError,
    PermanentSendError,
    RateLimited,
    TemporarySendError,
)
from textwire.transports import (
    FakeTransport,
    OutboundMessage,
    SendReceipt,
    SentRecord,
    Transport,
)

TO = "+14155550123"
OTHER = "+447700900123"
FROM = "+14155559876"
SID = re.compile(r"^SM[0-9a-f]{32}$")


def test_is_a_transport() -> None:
    assert isinstance(FakeTransport(), Transport)
    assert FakeTransport.name == "fake"


def test_records_and_answers_like_twilio() -> None:
    fake = FakeTransport()
    message = OutboundMessage(
        to=TO, from_=FROM, body="a" * 161, media=("https://e.x/a.jpg",)
    )

    receipt = fake.send(message)

    assert fake.sent == [message]
    assert SID.match(receipt.sid)
    assert receipt.status == "queued"
    assert receipt.num_segments == 2  # 161 GSM-7 characters
    assert receipt.num_media == 1
    assert fake.receipts == [receipt]


def test_sids_are_unique() -> None:
    fake = FakeTransport()
    sids = {fake.send(OutboundMessage(to=TO, body="x")).sid for _ in range(50)}
    assert len(sids) == 50


def test_media_only_has_no_segment_count() -> None:
    receipt = FakeTransport().send(OutboundMessage(to=TO, media=("https://e.x/a",)))
    assert receipt.num_segments is None
    assert receipt.num_media == 1


def test_unicode_body_segments() -> None:
    receipt = FakeTransport().send(OutboundMessage(to=TO, body="ç" * 71))
    assert receipt.num_segments == 2


def test_fail_next_raises_then_recovers() -> None:
    fake = FakeTransport()
    fake.fail_next(RateLimited("slow down", retry_after=3), times=2)
    message = OutboundMessage(to=TO, body="x")

    for _ in range(2):
        with pytest.raises(RateLimited) as caught:
            fake.send(message)
        assert caught.value.retry_after == 3
    assert fake.sent == []

    fake.send(message)
    assert fake.sent == [message]


def test_fail_next_in_order() -> None:
    fake = FakeTransport()
    fake.fail_next(TemporarySendError("first"))
    fake.fail_next(PermanentSendError("second", code=21211))
    with pytest.raises(TemporarySendError, match="first"):
        fake.send(OutboundMessage(to=TO, body="x"))
    with pytest.raises(PermanentSendError, match="second"):
        fake.send(OutboundMessage(to=TO, body="x"))


def test_fail_next_rejects_zero_times() -> None:
    with pytest.raises(ValueError):
        FakeTransport().fail_next(TemporarySendError("x"), times=0)


def test_ambiguous_failure_that_was_delivered() -> None:
    """Twilio got the request, the answer was lost: reconcile finds it."""
    fake = FakeTransport()
    before = datetime.now(UTC)
    fake.fail_next(AmbiguousSendError("answer lost"), delivered=True)
    message = OutboundMessage(to=TO, from_=FROM, body="hello")

    with pytest.raises(AmbiguousSendError):
        fake.send(message)

    assert fake.sent == [message]
    found = fake.find_sent(to=TO, from_=FROM, since=before)
    assert len(found) == 1
    assert found[0].body == "hello"
    assert SID.match(found[0].sid)


def test_ambiguous_failure_not_delivered() -> None:
    fake = FakeTransport()
    fake.fail_next(AmbiguousSendError("lost on the way"))
    with pytest.raises(AmbiguousSendError):
        fake.send(OutboundMessage(to=TO, body="x"))
    assert fake.sent == []
    assert fake.find_sent(to=TO, from_=None, since=datetime.min) == []


def test_responder_builds_receipts() -> None:
    seen: list[OutboundMessage] = []

    def responder(message: OutboundMessage) -> SendReceipt:
        seen.append(message)
        return SendReceipt(sid="SM" + "f" * 32, status="accepted", num_segments=7)

    fake = FakeTransport(responder)
    message = OutboundMessage(to=TO, body="x")
    receipt = fake.send(message)

    assert seen == [message]
    assert receipt.status == "accepted"
    assert receipt.num_segments == 7
    assert fake.sent == [message]
    assert fake.find_sent(to=TO, from_=None, since=datetime.min)[0].sid == receipt.sid


def test_responder_may_refuse() -> None:
    def responder(message: OutboundMessage) -> SendReceipt:
        raise PermanentSendError("opted out", code=21610)

    fake = FakeTransport(responder)
    with pytest.raises(PermanentSendError):
        fake.send(OutboundMessage(to=TO, body="x"))
    assert fake.sent == []


def test_unexpected_responder_error_becomes_temporary() -> None:
    def responder(message: OutboundMessage) -> SendReceipt:
        raise RuntimeError("bug")

    with pytest.raises(TemporarySendError):
        FakeTransport(responder).send(OutboundMessage(to=TO, body="x"))


def test_find_sent_filters() -> None:
    fake = FakeTransport()
    start = datetime.now(UTC)
    fake.send(OutboundMessage(to=TO, from_=FROM, body="one", media=("https://e.x/a",)))
    fake.send(OutboundMessage(to=TO, from_="+14155550000", body="two"))
    fake.send(OutboundMessage(to=OTHER, from_=FROM, body="three"))

    mine = fake.find_sent(to=TO, from_=FROM, since=start)
    assert [record.body for record in mine] == ["one"]
    record = mine[0]
    assert isinstance(record, SentRecord)
    assert (record.to, record.from_, record.num_media, record.status) == (
        TO,
        FROM,
        1,
        "queued",
    )
    assert record.date_created is not None
    assert record.date_created.tzinfo is not None
    assert record.date_created >= start

    assert [r.body for r in fake.find_sent(to=TO, from_=None, since=start)] == [
        "one",
        "two",
    ]
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert fake.find_sent(to=TO, from_=None, since=later) == []
    # A naive datetime is read as UTC.
    naive = start.replace(tzinfo=None) - timedelta(seconds=1)
    assert len(fake.find_sent(to=TO, from_=None, since=naive)) == 2


def test_clear() -> None:
    fake = FakeTransport()
    fake.send(OutboundMessage(to=TO, body="x"))
    fake.fail_next(TemporarySendError("x"))
    fake.clear()
    assert fake.sent == []
    assert fake.receipts == []
    fake.send(OutboundMessage(to=TO, body="y"))  # the queued failure is gone too
    assert len(fake.sent) == 1


def test_thread_safety() -> None:
    fake = FakeTransport()
    fake.fail_next(TemporarySendError("boom"), times=10)
    threads_n, per_thread = 8, 50
    failures: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(threads_n)

    def work(worker: int) -> None:
        start.wait(timeout=10)
        for n in range(per_thread):
            try:
                fake.send(OutboundMessage(to=TO, body=f"{worker}-{n}"))
            except TemporarySendError:
                with lock:
                    failures.append(1)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(failures) == 10
    assert len(fake.sent) == threads_n * per_thread - 10
    assert len({r.sid for r in fake.receipts}) == len(fake.sent)
    assert len(fake.find_sent(to=TO, from_=None, since=datetime.min)) == len(fake.sent)

"""The SQL store on SQLite and PostgreSQL: dedupe, claims, leases, order, status."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from textwire.conversation import ConversationKey, StateRecord
from textwire.errors import StorageError
from textwire.messages import Inbound
from textwire.storage.schema import Base
from textwire.storage.sql import SqlStore, normalize_database_url

from .conftest import make_form

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


def queue(store: SqlStore, to: str = "+14155550199", body: str = "hi") -> int:
    with store.begin() as conn:
        return store.outbox.enqueue(
            conn,
            to=to,
            body=body,
            media=["https://x.example/a.png"],
            from_="+14155550100",
            messaging_service_sid=None,
            now=NOW,
        )


def test_migrations_match_the_models(store: SqlStore) -> None:
    # Given a database built by the migrations, the models describe it exactly.
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert store.current_revision() == store.head_revision()
    store.check()


def test_check_reports_an_unmigrated_database(database_url: str) -> None:
    store = SqlStore(database_url)
    with pytest.raises(StorageError, match="textwire db upgrade"):
        store.check()
    store.dispose()


def test_in_memory_sqlite_and_unknown_schemes_are_refused() -> None:
    with pytest.raises(StorageError, match="in-memory"):
        SqlStore("sqlite:///:memory:")
    with pytest.raises(StorageError, match="unsupported"):
        SqlStore("mysql+nodriver://x/y")
    assert normalize_database_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"


def test_record_inbound_is_deduplicated_by_message_sid(store: SqlStore) -> None:
    msg = Inbound.from_form(make_form("hello"))
    first = store.inbox.record(msg, NOW)
    second = store.inbox.record(msg, NOW)
    assert first is not None
    assert second is None
    (row,) = store.messages.all("inbound")
    assert row["sid"] == msg.sid and row["from_number"] == "+14155550199"
    assert row["status"] == "received"
    (item,) = store.inbox.rows()
    assert item["id"] == first and item["message_id"] == row["id"]
    assert item["status"] == "pending" and item["contact"] == "+14155550199"


def test_racing_inbound_inserts_have_one_winner(store: SqlStore) -> None:
    msg = Inbound.from_form(make_form("hello"))
    barrier = threading.Barrier(4)
    results: list[int | None] = []
    lock = threading.Lock()

    def insert() -> None:
        barrier.wait(timeout=10)
        got = store.inbox.record(msg, NOW)
        with lock:
            results.append(got)

    threads = [threading.Thread(target=insert) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 4
    assert sum(r is not None for r in results) == 1
    assert len(store.messages.all("inbound")) == 1
    assert len(store.inbox.rows()) == 1


def test_claim_is_exclusive_across_threads(store: SqlStore) -> None:
    # Given 40 queued messages to 40 different phones
    ids = {queue(store, to=f"+1415555{i:04d}") for i in range(40)}
    claimed: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def claim(worker: str) -> None:
        barrier.wait(timeout=10)
        while True:
            items = store.outbox.claim(NOW, limit=3, worker_id=worker, lease=LEASE)
            if not items:
                return
            with lock:
                claimed.extend(item.id for item in items)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # Then each was claimed exactly once
    assert sorted(claimed) == sorted(ids)


def test_claim_respects_due_time_and_order_per_phone(store: SqlStore) -> None:
    a1 = queue(store, to="+14155550001", body="part 1")
    a2 = queue(store, to="+14155550001", body="part 2")
    b1 = queue(store, to="+14155550002", body="other")
    items = store.outbox.claim(NOW, limit=10, worker_id="w", lease=LEASE)
    # Only the first open part per phone may go out.
    assert [i.id for i in items] == [a1, b1]
    assert store.outbox.claim(NOW, limit=10, worker_id="w2", lease=LEASE) == []
    first = items[0]
    assert store.outbox.mark_sent(
        first, "w", sid="SM" + "1" * 32, status="queued", num_segments=1, now=NOW
    )
    (second,) = store.outbox.claim(NOW, limit=10, worker_id="w", lease=LEASE)
    assert second.id == a2 and second.body == "part 2"
    assert second.media == ("https://x.example/a.png",)


def test_retry_waits_until_due(store: SqlStore) -> None:
    queue(store)
    (item,) = store.outbox.claim(NOW, limit=1, worker_id="w", lease=LEASE)
    later = NOW + timedelta(seconds=30)
    assert store.outbox.mark_retry(
        item, "w", next_attempt_at=later, error="boom", code=None, now=NOW
    )
    assert (
        store.outbox.claim(
            later - timedelta(seconds=1), limit=1, worker_id="w", lease=LEASE
        )
        == []
    )
    (again,) = store.outbox.claim(later, limit=1, worker_id="w", lease=LEASE)
    assert again.attempts == 2 and not again.reconcile


def test_expired_lease_is_taken_over_and_flagged_for_reconciliation(
    store: SqlStore,
) -> None:
    queue(store)
    (item,) = store.outbox.claim(NOW, limit=1, worker_id="dead", lease=LEASE)
    assert not item.reconcile
    assert (
        store.outbox.claim(NOW + LEASE / 2, limit=1, worker_id="w2", lease=LEASE) == []
    )
    (taken,) = store.outbox.claim(NOW + LEASE * 2, limit=1, worker_id="w2", lease=LEASE)
    assert taken.id == item.id and taken.reconcile and taken.attempts == 2
    # The dead worker's late answer is dropped: the row is no longer its own.
    assert not store.outbox.mark_sent(
        item, "dead", sid="SM" + "2" * 32, status="queued", num_segments=1, now=NOW
    )
    assert store.outbox.row(item.id)["status"] == "sending"  # type: ignore[index]


def test_unknown_rows_are_reconciled_on_the_next_claim(store: SqlStore) -> None:
    queue(store)
    (item,) = store.outbox.claim(NOW, limit=1, worker_id="w", lease=LEASE)
    store.outbox.mark_retry(
        item,
        "w",
        next_attempt_at=NOW,
        error="timeout",
        code=None,
        now=NOW,
        unknown=True,
    )
    assert store.outbox.row(item.id)["status"] == "unknown"  # type: ignore[index]
    (again,) = store.outbox.claim(NOW, limit=1, worker_id="w", lease=LEASE)
    assert again.reconcile


def test_failed_row_records_code_and_unblocks_the_next_part(store: SqlStore) -> None:
    first = queue(store, body="1")
    second = queue(store, body="2")
    (item,) = store.outbox.claim(NOW, limit=5, worker_id="w", lease=LEASE)
    assert item.id == first
    store.outbox.mark_failed(item, "w", error="invalid number", code=21211, now=NOW)
    row = store.outbox.row(first)
    assert row is not None
    assert (row["status"], row["last_error_code"], row["message_status"]) == (
        "failed",
        21211,
        "failed",
    )
    (next_item,) = store.outbox.claim(NOW, limit=5, worker_id="w", lease=LEASE)
    assert next_item.id == second


def test_status_only_moves_forward(store: SqlStore) -> None:
    outbox_id = queue(store)
    (item,) = store.outbox.claim(NOW, limit=1, worker_id="w", lease=LEASE)
    sid = "SM" + "3" * 32
    store.outbox.mark_sent(item, "w", sid=sid, status="queued", num_segments=1, now=NOW)

    def status_of() -> str:
        row = store.outbox.row(outbox_id)
        assert row is not None
        return str(row["message_status"])

    for new, expected in [
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("sent", "delivered"),  # late callback
        ("sending", "delivered"),
        ("undelivered", "delivered"),
        ("read", "read"),
    ]:
        assert store.messages.update_status(
            sid=sid,
            outbox_id=None,
            status=new,
            error_code=None,
            error_message=None,
            now=NOW,
        )
        assert status_of() == expected, new
    assert not store.messages.update_status(
        sid="SM" + "9" * 32,
        outbox_id=None,
        status="sent",
        error_code=None,
        error_message=None,
        now=NOW,
    )


def test_status_by_outbox_id_before_the_sid_is_stored(store: SqlStore) -> None:
    outbox_id = queue(store)
    sid = "SM" + "4" * 32
    assert store.messages.update_status(
        sid=sid,
        outbox_id=outbox_id,
        status="sent",
        error_code=None,
        error_message=None,
        now=NOW,
    )
    (row,) = store.messages.all("outbound")
    assert row["sid"] == sid and row["status"] == "sent"


def test_unknown_status_is_kept_out_of_the_state_machine(store: SqlStore) -> None:
    outbox_id = queue(store)
    assert store.messages.update_status(
        sid=None,
        outbox_id=outbox_id,
        status="teleported",
        error_code=30008,
        error_message="unknown",
        now=NOW,
    )
    (row,) = store.messages.all("outbound")
    assert row["status"] == "pending" and row["error_code"] == 30008


def test_state_store_round_trip_and_upsert(store: SqlStore) -> None:
    key = ConversationKey(bot_number="+14155550100", contact="+14155550199")
    with store.begin() as conn:
        states = store.states.store(conn)
        assert states.load(key) is None
        states.save(key, StateRecord("a", {"n": 1}, None))
        states.save(key, StateRecord("b", {"n": 2}, NOW))
    with store.begin() as conn:
        record = store.states.store(conn).load(key)
        assert record == StateRecord("b", {"n": 2}, NOW)
        store.states.store(conn).delete(key)
    with store.begin() as conn:
        assert store.states.store(conn).load(key) is None


def test_opt_out_flag(store: SqlStore) -> None:
    with store.begin() as conn:
        assert store.contacts.ensure(conn, "+14155550199", NOW) is False
        store.contacts.set_opt_out(conn, "+14155550199", True, NOW)
        assert store.contacts.ensure(conn, "+14155550199", NOW) is True


def test_naive_datetimes_are_refused(store: SqlStore) -> None:
    with pytest.raises(StorageError), store.begin() as conn:
        store.outbox.enqueue(
            conn,
            to="+14155550199",
            body="x",
            media=[],
            from_=None,
            messaging_service_sid=None,
            now=datetime(2026, 1, 1),
        )


def test_the_webhooks_insert_stores_exactly_what_the_models_read_back(
    store: SqlStore,
) -> None:
    # The webhook's insert runs on the driver's cursor (storage.engine.Prepared):
    # every value must come back as the ORM-typed columns expect it.
    form = make_form(
        "Grüße 👋 from “Ana” \\ 100%",
        NumMedia="2",
        MediaUrl0="https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
        MediaContentType0="image/jpeg",
        MediaUrl1="https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME2",
        FromCity="MÜNCHEN",
    )
    msg = Inbound.from_form(form)
    at = datetime(2026, 12, 2, 9, 30, 15, 123456, tzinfo=UTC)
    inbox_id = store.inbox.record(msg, at, public_url="https://x.example/bot")
    assert inbox_id is not None
    (row,) = store.messages.all("inbound")
    assert row["body"] == msg.body and row["created_at"] == at
    assert row["media"] == [
        {"url": m.url, "content_type": m.content_type} for m in msg.media
    ]
    assert (row["num_segments"], row["status"]) == (1, "received")
    (item,) = store.inbox.rows()
    assert (
        item["params"] == dict(msg.params) and item["params"]["FromCity"] == "MÜNCHEN"
    )
    assert item["created_at"] == item["next_attempt_at"] == at
    assert item["public_url"] == "https://x.example/bot"
    assert (item["status"], item["attempts"], item["claimed_by"]) == (
        "pending",
        0,
        None,
    )
    # and the worker gets the very message back
    (claimed,) = store.inbox.claim(at, limit=5, worker_id="w", lease=LEASE)
    assert claimed.msg == msg and claimed.public_url == "https://x.example/bot"

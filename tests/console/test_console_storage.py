"""The console's storage on SQLite and PostgreSQL: the login throttle's
arithmetic, the conversation list, and the outbox page's reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from textwire.config import Settings
from textwire.service import queue_message
from textwire.storage.sql import SqlStore
from textwire.testing import make_inbound
from textwire.web.console_present import outbox_state, search

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ANA = "+14155550199"


def test_five_failures_in_a_burst_then_one_every_twelve_seconds(
    store: SqlStore,
) -> None:
    console, now = store.console, 1_000_000.0
    for _ in range(5):
        assert console.login_wait("10.1.2.3", now, per_minute=5) == 0
        console.login_failed("10.1.2.3", now, per_minute=5)
    assert console.login_wait("10.1.2.3", now, per_minute=5) == 12.0
    assert console.login_wait("10.9.9.9", now, per_minute=5) == 0  # per address
    assert console.login_wait("10.1.2.3", now + 12, per_minute=5) == 0
    console.login_failed("10.1.2.3", now + 12, per_minute=5)
    assert console.login_wait("10.1.2.3", now + 12, per_minute=5) == 12.0
    # A quiet minute later the whole burst is back.
    assert console.login_wait("10.1.2.3", now + 84, per_minute=5) == 0


def test_the_list_puts_people_waiting_first_and_reads_newest_first(
    store: SqlStore,
) -> None:
    for number, body in [(ANA, "one"), ("+14155550142", "two"), ("+14155550123", "3")]:
        store.inbox.record(make_inbound(body, from_=number), T0)
    order = [c.contact.phone for c in store.console.conversations(T0)]
    assert order == ["+14155550123", "+14155550142", ANA]
    from textwire.handoff import HandoffChange

    store.console.set_handoff(ANA, HandoffChange(active=True, by="Sam"), T0)
    (first, *_) = store.console.conversations(T0)
    assert first.contact.phone == ANA and first.waiting and first.unread == 1


def test_the_outbox_says_why_a_row_waits(store: SqlStore, settings: Settings) -> None:
    (first,) = queue_message(store, to=ANA, body="part 1", settings=settings, now=T0)
    (second,) = queue_message(store, to=ANA, body="part 2", settings=settings, now=T0)
    entries = {e.id: e for e in store.console.outbox()}
    assert outbox_state(entries[first], T0).state == "queued"
    behind = outbox_state(entries[second], T0)
    assert behind.state == "held" and f"row {first}" in behind.detail
    later = outbox_state(entries[first], T0 - timedelta(minutes=5))
    assert later.state == "held" and "rate limit" in later.detail


def test_the_search_box_reads_numbers_in_any_format() -> None:
    for raw in ("(415) 555-0199", "+1 415 555 0199", "4155550199", "1-415-555-0199"):
        assert search(raw, "US").phone == ANA
    assert search("0199", "US").digits == "0199"
    assert search("printer jam", "US").text == "printer jam"
    assert search("   ", "US").phone is None


def test_the_console_migration_goes_down_and_up_again_with_data(
    store: SqlStore,
) -> None:
    from alembic import command

    store.inbox.record(make_inbound("kept", from_=ANA), T0)
    # One step: whatever 0005 sits on (0003 now, 0004 once issue 10 lands).
    command.downgrade(store.db._alembic_config(), "-1")
    assert store.current_revision() not in (None, "0005")
    store.upgrade()
    assert store.current_revision() == store.head_revision()
    assert [m["body"] for m in store.messages.all()] == ["kept"]

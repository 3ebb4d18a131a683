"""The soak of ``make soak``, short: a few hundred texts through gunicorn -w 2
and two ``textwire worker`` processes on PostgreSQL, an emulator answering
500s, 429s and stalls, one worker SIGKILLed and restarted; nothing lost,
nothing sent twice, and ``/metrics`` agrees (see ``bench/soak.py``)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bench.soak import SoakConfig, markdown, run_soak
from sqlalchemy import text, update

from textwire.config import Settings
from textwire.service import queue_message
from textwire.storage.schema import Message, OutboxItem
from textwire.storage.sql import SqlStore

pytestmark = pytest.mark.postgres


def test_a_short_soak_loses_nothing_and_sends_nothing_twice(
    postgres_url: str, tmp_path: Path
) -> None:
    # Given the production layout, and faults often enough that a few hundred
    # messages meet each kind
    cfg = SoakConfig(
        messages=300,
        clients=6,
        error_500=0.10,
        error_429=0.10,
        stall=0.03,
        twilio_timeout=1.0,
        stall_seconds=3.0,
        lease_seconds=5.0,
        drain_timeout=40.0,
        seed=7,
        database_url=postgres_url,
    )
    # When it runs, with one worker killed halfway
    report = run_soak(cfg, tmp_path)
    summary = markdown(report)
    # Then every webhook was answered, every reply sent exactly once
    assert report["inbound"]["answered_200"] == 330, summary
    assert report["inbound"]["delivered_twice_concurrently"] == 15
    assert report["replies"]["delivered"] == report["replies"]["expected"] == 300
    assert report["replies"]["duplicates"] == 0, summary
    assert report["replies"]["lost"] == 0, summary
    assert report["replies"]["outbox_rows"] == {"sent": 300}, summary
    # and /metrics agrees with what the soak and the emulator counted
    failed = [c for c in report["checks"] if not c["ok"]]
    assert failed == [], summary
    assert report["ok"], summary
    # ... having really met every fault and the kill
    assert all(n > 0 for n in report["emulator"]["faults_injected"].values()), summary
    assert report["metrics"]["reconciliations"]["found"] > 0, summary
    assert report["kill"]["pid"], summary
    assert "| **duplicates** | **0** |" in summary


def test_a_status_callback_racing_the_worker_does_not_deadlock(
    postgres_url: str,
) -> None:
    """Found by the soak: a callback for a message the worker was marking sent
    locked the two rows in the other order, and PostgreSQL killed one of them."""
    store = SqlStore(postgres_url)
    store.upgrade()
    try:
        settings = Settings(twilio_phone_number="+14155550100")
        (outbox_id,) = queue_message(
            store, to="+14155550199", body="hi", settings=settings
        )
        now = datetime.now(UTC)
        (item,) = store.outbox.claim(
            now, limit=1, worker_id="w", lease=timedelta(minutes=1)
        )
        sid = "SM" + "ab" * 16
        # Given the worker's mark_sent holding its first lock, the outbox row
        with store.engine.connect() as worker:
            tx = worker.begin()
            worker.execute(
                update(OutboxItem)
                .where(OutboxItem.id == outbox_id)
                .values(status="sent", provider_sid=sid)
            )
            backend = worker.execute(text("SELECT pg_backend_pid()")).scalar_one()
            # When the status callback for that message comes in meanwhile
            outcome: dict[str, object] = {}

            def callback() -> None:
                try:
                    outcome["found"] = store.messages.update_status(
                        sid=sid,
                        outbox_id=outbox_id,
                        status="sent",
                        error_code=None,
                        error_message=None,
                        now=now,
                    )
                except Exception as exc:  # the deadlock victim, if any
                    outcome["error"] = exc

            thread = threading.Thread(target=callback)
            thread.start()
            waiting = text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                "'Lock' AND pid <> :me AND datname = current_database() "
                "AND query ILIKE 'UPDATE outbox%'"
            )
            tick = threading.Event()
            for _ in range(200):  # until the callback waits for a lock (≤ 10 s)
                with store.engine.connect() as probe:
                    if probe.execute(waiting, {"me": backend}).scalar_one():
                        break
                tick.wait(0.05)
            else:
                pytest.fail("the status callback never waited for the worker")
            # and the worker goes on to the message row and commits
            worker.execute(
                update(Message)
                .where(Message.id == item.message_id)
                .values(sid=sid, sent_at=now, updated_at=now)
            )
            tx.commit()
            thread.join(30)
        # Then both went through
        assert outcome == {"found": True}
        row = store.outbox.row(outbox_id)
        assert row is not None and (row["status"], row["sid"]) == ("sent", sid)
        assert row["message_status"] == "sent"
    finally:
        store.dispose()

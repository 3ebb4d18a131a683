"""GET /metrics: exact counts for a conversation, the outbox gauges, the token,
several processes adding up (prometheus-client's multiprocess mode), the
gunicorn hook and the worker's own metrics port.

The counters are process-wide (prometheus-client's default registry), so every
test asserts on the difference between a scrape before and a scrape after.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from textwire import metrics
from textwire.config import Settings
from textwire.examples.helpdesk import create_bot
from textwire.service import queue_message
from textwire.storage.sql import SqlStore
from textwire.web import create_app, gunicorn_conf
from textwire.worker import SendWorker

from .conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    BOT_NUMBER,
    PUBLIC_URL,
    PostFn,
    TwilioAPI,
    make_form,
    sign,
)
from .waiting import wait_for_server

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def scrape(client: FlaskClient, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain")
    return parse(response.get_data(as_text=True))


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def changes(
    before: Samples, after: Samples, prefix: str, *, histograms: bool = True
) -> dict[str, float]:
    """Every ``prefix…`` sample that moved, as ``name{a=b,…}`` → difference
    (without histogram buckets and sums when ``histograms`` is false)."""
    moved: dict[str, float] = {}
    for key in set(before) | set(after):
        name, labels = key
        if not name.startswith(prefix) or name.endswith("_created"):
            continue
        if not histograms and name.endswith(("_bucket", "_sum")):
            continue
        diff = after.get(key, 0.0) - before.get(key, 0.0)
        if diff:
            shown = ",".join(f"{k}={v}" for k, v in sorted(labels))
            moved[f"{name}{{{shown}}}"] = diff
    return moved


def status_form(sid: str, status: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": ACCOUNT_SID,
        "From": BOT_NUMBER,
        "To": "+14155550199",
        "ApiVersion": "2010-04-01",
    }


# -- one conversation, counted exactly -----------------------------------------


def test_a_conversation_is_counted_exactly(
    client: FlaskClient,
    post_webhook: PostFn,
    worker: SendWorker,
    twilio_api: TwilioAPI,
    store: SqlStore,
) -> None:
    before = scrape(client)
    # Given a HELP (one reply), the same webhook again, and a STOP
    help_form = make_form("help")
    assert post_webhook(help_form).status_code == 200
    assert post_webhook(help_form).status_code == 200
    assert post_webhook(make_form("STOP", From="+14155550142")).status_code == 200
    recorded = scrape(client)
    assert value(recorded, "textwire_inbox_depth") == 2
    assert value(recorded, "textwire_outbox_depth") == store.outbox.depth() == 0
    # When the worker handles them (two contacts: at once)
    t0 = datetime.now(UTC)
    assert worker.inbox.run_once(now=t0) == 2
    queued = scrape(client)
    assert value(queued, "textwire_inbox_depth") == 0
    assert value(queued, "textwire_outbox_depth") == store.outbox.depth() == 1
    # and Twilio answers the first create 500 and accepts the second
    twilio_api.failures.append(
        (500, {"code": 20500, "message": "Internal Server Error", "status": 500}, {})
    )
    assert worker.run_once(now=t0) == 1
    assert worker.run_once(now=t0 + timedelta(minutes=5)) == 1
    row = store.outbox.row(1)
    assert row is not None and row["status"] == "sent"
    # and Twilio reports the message delivered
    callback = f"/twilio/status?outbox={row['id']}"
    form = status_form(row["sid"], "delivered")
    assert post_webhook(form, callback).status_code == 204
    after = scrape(client)
    # Then exactly these moved, by exactly these amounts
    assert changes(before, after, "textwire_", histograms=False) == {
        "textwire_inbound_messages_total{result=new}": 2,
        "textwire_inbound_messages_total{result=duplicate}": 1,
        "textwire_inbox_handled_total{result=ok}": 2,
        "textwire_handler_duration_seconds_count{}": 2,
        "textwire_opt_out_keywords_total{keyword=stop}": 1,
        "textwire_replies_queued_total{via=outbox}": 1,
        "textwire_send_attempts_total{code=20500,outcome=retry}": 1,
        "textwire_send_attempts_total{code=none,outcome=sent}": 1,
        "textwire_send_duration_seconds_count{}": 2,
        "textwire_status_callbacks_total{status=delivered}": 1,
    }
    # two API calls timed, each under the 2 s timeout
    bucket = "textwire_send_duration_seconds_bucket"
    for le in ("2.5", "+Inf"):
        assert value(after, bucket, le=le) - value(before, bucket, le=le) == 2
    assert value(after, "textwire_send_duration_seconds_sum") > value(
        before, "textwire_send_duration_seconds_sum"
    )
    assert value(after, "textwire_outbox_depth") == store.outbox.depth() == 0
    assert value(after, "textwire_database_up") == 1


def test_twiml_replies_and_refusals_have_their_own_labels(
    settings: Settings,
    store: SqlStore,
    worker: SendWorker,
    twilio_api: TwilioAPI,
) -> None:
    app = create_app(
        settings.replace(reply_mode="twiml"), bot=create_bot(), store=store
    )
    client = app.test_client()
    before = scrape(client)
    form = make_form("help")
    response = client.post(
        "/twilio/sms",
        data=form,
        headers={"X-Twilio-Signature": sign(PUBLIC_URL + "/twilio/sms", form)},
    )
    assert response.status_code == 200 and "<Message" in response.get_data(True)
    # A message queued for someone who then texted STOP is refused locally
    (outbox_id,) = queue_message(
        store, to="+14155550177", body="your order", settings=settings
    )
    with store.begin() as conn:
        store.contacts.set_opt_out(conn, "+14155550177", True, datetime.now(UTC))
    assert worker.run_once() == 1
    assert (store.outbox.row(outbox_id) or {})["status"] == "failed"
    after = scrape(client)
    assert changes(before, after, "textwire_", histograms=False) == {
        "textwire_inbound_messages_total{result=new}": 1,
        "textwire_inbox_handled_total{result=ok}": 1,
        "textwire_handler_duration_seconds_count{}": 1,
        "textwire_replies_queued_total{via=twiml}": 1,
        "textwire_send_attempts_total{code=21610,outcome=refused}": 1,
    }
    assert twilio_api.creates == []


def test_label_values_are_bounded() -> None:
    assert metrics.code_label(None) == "none"
    assert metrics.code_label(21610) == "21610"
    assert metrics.code_label(20500) == "20500"
    assert metrics.code_label(98765) == "other"
    assert metrics.status_label(" Delivered ") == "delivered"
    assert metrics.status_label("exploded") == "other"
    with pytest.raises(ValueError, match="outcome"):
        metrics.count_send("maybe")


def test_unknown_statuses_and_codes_fold_into_other(
    client: FlaskClient, post_webhook: PostFn
) -> None:
    before = scrape(client)
    for status in ("made-up-1", "made-up-2"):
        assert post_webhook(status_form("SM" + "0" * 32, status), "/twilio/status")
    metrics.count_send("failed", 98765)
    after = scrape(client)
    assert changes(before, after, "textwire_") == {
        "textwire_status_callbacks_total{status=other}": 2,
        "textwire_send_attempts_total{code=other,outcome=failed}": 1,
    }


# -- the outbox gauges ---------------------------------------------------------


def test_outbox_gauges_are_the_stores_figures(
    client: FlaskClient, store: SqlStore, settings: Settings
) -> None:
    now = datetime.now(UTC)
    # Two rows due for five minutes already, one due now
    for i in range(2):
        queue_message(
            store,
            to=f"+1415555{i:04d}",
            body="old",
            settings=settings,
            now=now - timedelta(minutes=5),
        )
    queue_message(store, to="+14155550099", body="new", settings=settings, now=now)
    samples = scrape(client)
    assert value(samples, "textwire_outbox_depth") == store.outbox.depth() == 3
    age = value(samples, "textwire_outbox_oldest_due_age_seconds")
    assert 300 <= age < 400


def test_rows_not_yet_due_count_in_depth_but_not_in_age(
    client: FlaskClient, store: SqlStore, settings: Settings
) -> None:
    queue_message(
        store,
        to="+14155550123",
        body="later",
        settings=settings,
        now=datetime.now(UTC) + timedelta(hours=1),
    )
    samples = scrape(client)
    assert value(samples, "textwire_outbox_depth") == 1
    assert value(samples, "textwire_outbox_oldest_due_age_seconds") == 0


def test_an_unreachable_database_is_reported_not_raised(
    settings: Settings, tmp_path: Path
) -> None:
    down = SqlStore("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")
    try:
        samples = parse(metrics.render(down).decode())
    finally:
        down.dispose()
    assert value(samples, "textwire_database_up") == 0
    assert ("textwire_outbox_depth", frozenset()) not in samples
    assert ("textwire_inbound_messages_total", frozenset({("result", "new")})) in (
        samples
    )


# -- the token -----------------------------------------------------------------


@pytest.fixture
def guarded(settings: Settings, store: SqlStore) -> FlaskClient:
    app = create_app(
        settings.replace(metrics_token="s3cret-token"), bot=create_bot(), store=store
    )
    return app.test_client()


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token", "Basic czNjcmV0LXRva2Vu", "Bearer", "s3cret-token"],
)
def test_the_token_keeps_metrics_private(
    guarded: FlaskClient, header: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = guarded.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "textwire_" not in response.get_data(as_text=True)


def test_the_right_token_gets_the_metrics(guarded: FlaskClient) -> None:
    samples = scrape(guarded, token="s3cret-token")
    assert value(samples, "textwire_database_up") == 1
    # The other routes are not behind it
    assert guarded.get("/healthz").status_code == 200


def test_the_token_comes_from_the_environment() -> None:
    settings = Settings.from_env({"TEXTWIRE_METRICS_TOKEN": "abc"}, env_file=None)
    assert settings.metrics_token == "abc"
    assert "abc" not in repr(settings)


def test_metrics_can_be_left_out_of_an_app(settings: Settings, store: SqlStore) -> None:
    from textwire.web import Textwire

    app = Flask("shop")
    Textwire(create_bot(), settings=settings, store=store).init_app(app, metrics=False)
    assert app.test_client().get("/metrics").status_code == 404


def test_an_apps_own_metrics_route_is_not_shadowed(
    settings: Settings, store: SqlStore
) -> None:
    from textwire.errors import ConfigError
    from textwire.web import Textwire

    app = Flask("shop")

    @app.get("/metrics")
    def mine() -> str:
        return "mine"

    with pytest.raises(ConfigError, match="/metrics"):
        Textwire(create_bot(), settings=settings, store=store).init_app(app)
    textwire = Textwire(create_bot(), settings=settings, store=store)
    textwire.init_app(app, extras_prefix="/textwire")
    client = app.test_client()
    assert client.get("/metrics").get_data(as_text=True) == "mine"
    assert b"textwire_outbox_depth" in client.get("/textwire/metrics").data


# -- several processes -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def multiproc_env(tmp_path: Path, sqlite_url: str) -> Iterator[dict[str, str]]:
    store = SqlStore(sqlite_url)
    store.upgrade()
    store.dispose()
    directory = tmp_path / "metrics"
    directory.mkdir()
    yield {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": BOT_NUMBER,
        "TEXTWIRE_DATABASE_URL": sqlite_url,
        "TEXTWIRE_PUBLIC_URL": PUBLIC_URL,
        "TEXTWIRE_METRICS_TOKEN": "multi-token",
    }


def test_two_gunicorn_processes_add_up(
    multiproc_env: dict[str, str], tmp_path: Path
) -> None:
    # Given two gunicorn servers (one worker each) sharing the metrics directory
    procs: list[subprocess.Popen[bytes]] = []
    urls = []
    try:
        for n in range(2):
            port = _free_port()
            log = open(tmp_path / f"gunicorn-{n}.log", "wb")  # noqa: SIM115
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "gunicorn",
                        "-w",
                        "1",
                        "-b",
                        f"127.0.0.1:{port}",
                        "-c",
                        "python:textwire.web.gunicorn_conf",
                        "textwire.web:create_app()",
                    ],
                    env=multiproc_env,
                    cwd=tmp_path,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
            url = f"http://127.0.0.1:{port}"
            wait_for_server(
                url + "/healthz",
                proc=procs[-1],
                log=tmp_path / f"gunicorn-{n}.log",
                what=f"gunicorn {n}",
            )
            urls.append(url)

        def post(url: str, form: dict[str, str]) -> None:
            # The signature is over the public URL, wherever the request goes.
            signature = sign(PUBLIC_URL + "/twilio/sms", form)
            with requests.post(
                url + "/twilio/sms",
                data=form,
                headers={"X-Twilio-Signature": signature},
                timeout=10,
            ) as response:
                assert response.status_code == 200

        # When one handles three webhooks and the other two, plus a duplicate
        forms = [make_form("help", From=f"+1415555{i:04d}") for i in range(5)]
        for form in forms[:3]:
            post(urls[0], form)
        for form in forms[3:]:
            post(urls[1], form)
        post(urls[1], forms[0])

        # Then either one's /metrics shows the sum, and the outbox once
        def metrics_of(url: str) -> Samples:
            with requests.get(
                url + "/metrics",
                headers={"Authorization": "Bearer multi-token"},
                timeout=10,
            ) as response:
                assert response.status_code == 200
                return parse(response.text)

        for url in urls:
            samples = metrics_of(url)
            name = "textwire_inbound_messages_total"
            assert value(samples, name, result="new") == 5
            assert value(samples, name, result="duplicate") == 1
            # recorded for a worker (none runs here), nothing handled yet
            assert value(samples, "textwire_inbox_depth") == 5
            assert value(samples, "textwire_outbox_depth") == 0
        # ... counted by two processes (the masters' files hold zeros)
        directory = Path(multiproc_env["PROMETHEUS_MULTIPROC_DIR"])
        per_process = sorted(
            count
            for path in directory.glob("counter_*.db")
            if (count := _inbound_in(path))
        )
        assert per_process == [3, 3]
        # and a stopped process's counts stay in the sum
        procs[1].send_signal(signal.SIGTERM)
        procs[1].wait(timeout=15)
        samples = metrics_of(urls[0])
        assert value(samples, "textwire_inbound_messages_total", result="new") == 5
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=15)


def _inbound_in(path: Path) -> float:
    """The inbound webhooks one process's metrics file counted."""
    from prometheus_client.multiprocess import MultiProcessCollector

    return sum(
        sample.value
        for family in MultiProcessCollector.merge([str(path)])
        if family.name == "textwire_inbound_messages"
        for sample in family.samples
        if sample.name.endswith("_total")
    )


def test_the_gunicorn_hook_forgets_a_dead_workers_live_gauges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    live = tmp_path / "gauge_livesum_4242.db"
    kept = tmp_path / "counter_4242.db"
    other = tmp_path / "gauge_livesum_4343.db"
    for path in (live, kept, other):
        path.write_bytes(b"")
    gunicorn_conf.child_exit(None, SimpleNamespace(pid=4242))
    assert not live.exists()
    assert kept.exists() and other.exists()
    # and says so when the directory is not empty at start
    server = SimpleNamespace(log=logging.getLogger("test.gunicorn"))
    with caplog.at_level(logging.WARNING, "test.gunicorn"):
        gunicorn_conf.on_starting(server)
    assert "already holds 2 metric file(s)" in caplog.text


def test_the_gunicorn_hook_does_nothing_without_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    live = tmp_path / "gauge_livesum_4242.db"
    live.write_bytes(b"")
    gunicorn_conf.child_exit(None, SimpleNamespace(pid=4242))
    gunicorn_conf.on_starting(SimpleNamespace(log=logging.getLogger("x")))
    assert live.exists()


def test_a_missing_multiprocess_directory_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "absent")}
    result = subprocess.run(
        [sys.executable, "-c", "import textwire.web"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "is not a directory" in result.stderr
    assert "create an empty directory" in result.stderr


def test_a_worker_serves_its_own_metrics(
    tmp_path: Path, sqlite_url: str, settings: Settings
) -> None:
    store = SqlStore(sqlite_url)
    store.upgrade()
    queue_message(
        store,
        to="+14155550199",
        body="hi",
        settings=settings,
        now=datetime.now(UTC) + timedelta(hours=1),  # not due: nothing is sent
    )
    store.dispose()
    port = _free_port()
    env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": BOT_NUMBER,
        "TEXTWIRE_DATABASE_URL": sqlite_url,
        "TEXTWIRE_TWILIO_API_URL": "http://127.0.0.1:9",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "textwire", "worker", "--metrics-port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for_server(
            url, proc=proc, log=tmp_path / "worker.log", what="the worker's metrics"
        )
        with requests.get(url, timeout=10) as response:
            samples = parse(response.text)
        assert value(samples, "textwire_outbox_depth") == 1
        assert (
            "textwire_send_attempts_total",
            frozenset({("outcome", "sent"), ("code", "none")}),
        ) in samples
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    assert proc.returncode == 0, (tmp_path / "worker.log").read_text()

"""Shared fixtures: databases (SQLite always, PostgreSQL when reachable), the app,
signed webhook requests, and a local HTTP server standing in for Twilio's API."""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer
from twilio.request_validator import RequestValidator
from werkzeug import Request, Response

from textwire import Bot
from textwire.config import Settings
from textwire.examples.helpdesk import create_bot
from textwire.storage.sql import SqlStore
from textwire.transports.twilio import TwilioTransport
from textwire.web import create_app
from textwire.worker import InboxWorker, SendWorker, Worker

ACCOUNT_SID = "AC" + "a1" * 16
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
PUBLIC_URL = "https://bot.example.com"
BOT_NUMBER = "+14155550100"
IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_URL = os.environ.get(
    "TEXTWIRE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

_pg_state: dict[str, str | None] = {}


def _postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can (checked once)."""
    if "problem" not in _pg_state:
        import sqlalchemy

        try:
            engine = sqlalchemy.create_engine(POSTGRES_URL)
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT 1"))
            engine.dispose()
            _pg_state["problem"] = None
        except Exception as exc:  # any failure means "not here"
            _pg_state["problem"] = f"{type(exc).__name__}: {exc}"
    return _pg_state["problem"]


def require_postgres() -> None:
    problem = _postgres_problem()
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"PostgreSQL is required when CI=true: {problem}")
    pytest.skip(f"PostgreSQL not reachable: {problem}")


def _postgres_schema_url() -> Iterator[str]:
    import sqlalchemy

    schema = "tw_" + uuid.uuid4().hex[:12]
    admin = sqlalchemy.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options={quote('-csearch_path=' + schema)}"
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'textwire.db'}"
        return
    require_postgres()
    yield from _postgres_schema_url()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL schema of its own (for tests only PostgreSQL can run)."""
    require_postgres()
    yield from _postgres_schema_url()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'textwire.db'}"


@pytest.fixture
def store(database_url: str) -> Iterator[SqlStore]:
    """A migrated store on each database."""
    store = SqlStore(database_url)
    store.upgrade()
    yield store
    store.dispose()


@dataclass
class TwilioAPI:
    """A local server speaking just enough of Twilio's Messages API.

    Records every create call; ``failures`` holds responses to give first
    (status, json body, headers), one per request.
    """

    server: HTTPServer
    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[int, dict[str, Any], dict[str, str]]] = field(
        default_factory=list
    )
    stall: threading.Event | None = None
    latency: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    created: list[dict[str, Any]] = field(default_factory=list)
    # Random faults on creates: shares answered 500, 429 (Retry-After 1), and
    # accepted but answered only after ``chaos_stall`` seconds.
    chaos: tuple[float, float, float] | None = None
    chaos_stall: float = 1.5
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    @property
    def url(self) -> str:
        return self.server.url_for("").rstrip("/")

    @property
    def creates(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST"]

    def handle(self, request: Request) -> Response:
        record = {
            "method": request.method,
            "path": request.path,
            "form": {k: request.form.getlist(k) for k in request.form},
            "args": dict(request.args),
            "auth": request.authorization.username if request.authorization else None,
        }
        stall_after = False
        with self.lock:
            self.requests.append(record)
            failure = self.failures.pop(0) if self.failures else None
            if failure is None and self.chaos and request.method == "POST":
                failure, stall_after = self._roll()
        if self.latency:
            time.sleep(self.latency)  # sleep-ok: simulated API latency, server side
        if self.stall is not None:
            self.stall.wait(5)
        if failure is not None:
            status, body, headers = failure
            return Response(json.dumps(body), status, headers, "application/json")
        if request.method == "GET":
            return Response(
                json.dumps(self._page(request.args)),
                200,
                content_type="application/json",
            )
        form = request.form
        sid = "SM" + uuid.uuid4().hex
        media = form.getlist("MediaUrl")
        body = {
            "sid": sid,
            "account_sid": ACCOUNT_SID,
            "to": form.get("To"),
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": form.get("Body", ""),
            "status": "queued",
            "num_segments": "1",
            "num_media": str(len(media)),
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "date_created": format_datetime(datetime.now(UTC).replace(microsecond=0)),
            "date_updated": format_datetime(datetime.now(UTC).replace(microsecond=0)),
            "date_sent": format_datetime(datetime.now(UTC).replace(microsecond=0)),
            "error_code": None,
            "error_message": None,
            "price": None,
            "price_unit": "USD",
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
            "subresource_uris": {},
        }
        with self.lock:
            self.created.append(body)
        if stall_after:
            time.sleep(self.chaos_stall)  # sleep-ok: the answer comes too late
        return Response(json.dumps(body), 201, content_type="application/json")

    def _roll(self) -> tuple[tuple[int, dict[str, Any], dict[str, str]] | None, bool]:
        assert self.chaos is not None
        p500, p429, pstall = self.chaos
        draw = self.rng.random()
        if draw < p500:
            error = {"code": 20500, "message": "Internal Server Error", "status": 500}
            return (500, error, {}), False
        if draw < p500 + p429:
            error = {"code": 20429, "message": "Too Many Requests", "status": 429}
            return (429, error, {"Retry-After": "1"}), False
        return None, draw < p500 + p429 + pstall

    def _page(self, args: Any) -> dict[str, Any]:
        with self.lock:
            found = [
                m
                for m in reversed(self.created)
                if m["to"] == args.get("To", m["to"])
                and m["from"] == args.get("From", m["from"])
            ]
        return {
            "messages": found,
            "end": 0,
            "first_page_uri": "/",
            "next_page_uri": None,
            "page": 0,
            "page_size": 50,
            "previous_page_uri": None,
            "start": 0,
            "uri": "/",
        }


@pytest.fixture
def twilio_api(httpserver: HTTPServer) -> Iterator[TwilioAPI]:
    api = TwilioAPI(httpserver)
    httpserver.expect_request(
        re.compile(rf"^/2010-04-01/Accounts/{ACCOUNT_SID}/Messages\.json$")
    ).respond_with_handler(api.handle)
    yield api
    if api.stall is not None:
        api.stall.set()


def base_settings(database_url: str) -> Settings:
    """The tests' settings for ``database_url`` (the ``settings`` fixture's)."""
    return Settings(
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_phone_number=BOT_NUMBER,
        public_url=PUBLIC_URL,
        database_url=database_url,
        backoff_base=1.0,
        max_send_attempts=3,
        worker_concurrency=1,
        rate_limit=False,  # pacing has its own tests (test_ratelimit.py)
    )


@pytest.fixture
def settings(database_url: str) -> Settings:
    return base_settings(database_url)


@pytest.fixture
def bot() -> Bot:
    return create_bot()


@pytest.fixture
def app(settings: Settings, bot: Bot, store: SqlStore) -> Flask:
    return create_app(settings, bot=bot, store=store)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def api_transport(
    api: TwilioAPI, public_url: str | None = PUBLIC_URL
) -> TwilioTransport:
    """A TwilioTransport talking to the local stand-in ``api``."""
    return TwilioTransport(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        from_=BOT_NUMBER,
        api_url=api.url,
        timeout=2.0,
        public_url=public_url,
    )


@pytest.fixture
def transport(twilio_api: TwilioAPI, settings: Settings) -> Iterator[TwilioTransport]:
    transport = api_transport(twilio_api, settings.public_url)
    yield transport
    transport.close()


@pytest.fixture
def worker(
    store: SqlStore, transport: TwilioTransport, settings: Settings, bot: Bot
) -> Iterator[Worker]:
    """The worker, stepped by the test: ``worker.run_once()`` handles what the
    webhooks recorded, then sends what that queued."""
    worker = Worker(store, bot, transport, settings=settings, worker_id="test-worker")
    yield worker
    worker.stop()


def handle_inbox(
    store: SqlStore, bot: Bot, settings: Settings, *, now: datetime | None = None
) -> int:
    """Run ``bot`` on every message the webhooks recorded, as the worker does
    (no sending); how many were handled."""
    inbox = InboxWorker(store, bot, settings=settings, worker_id="test-inbox")
    try:
        total = 0
        while handled := inbox.run_once(now):
            total += handled
        return total
    finally:
        inbox.stop()


@pytest.fixture
def send_worker(
    store: SqlStore, transport: TwilioTransport, settings: Settings
) -> Iterator[SendWorker]:
    """The send side alone, for tests that queue rows themselves."""
    worker = SendWorker(store, transport, settings=settings, worker_id="test-worker")
    yield worker
    worker.stop()


_counter = iter(range(1, 10**9))


def make_form(body: str = "hello", **overrides: str) -> dict[str, str]:
    """A complete Twilio inbound-message form, with a fresh MessageSid."""
    sid = f"SM{next(_counter):032x}"
    form = {
        "MessageSid": sid,
        "SmsSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "MessagingServiceSid": "",
        "From": "+14155550199",
        "To": BOT_NUMBER,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
        "FromCountry": "US",
        "FromState": "CA",
        "FromCity": "SAN FRANCISCO",
        "FromZip": "94105",
        "ToCountry": "US",
        "ToState": "CA",
        "ToCity": "",
        "ToZip": "",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }
    form.update(overrides)
    return form


def sign(url: str, form: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, form)


PostFn = Callable[..., Any]


@pytest.fixture
def post_webhook(client: FlaskClient) -> PostFn:
    """POST a form to a webhook path, signed as Twilio signs it."""

    def post(
        form: dict[str, str], path: str = "/twilio/sms", *, signature: str | None = None
    ) -> Any:
        sig = signature if signature is not None else sign(PUBLIC_URL + path, form)
        return client.post(path, data=form, headers={"X-Twilio-Signature": sig})

    return post

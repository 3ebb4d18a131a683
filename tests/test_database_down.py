"""The database is down: webhooks and status callbacks answer 503 with a
Retry-After (never a 200 for a message that was not stored, and not a 500).

PostgreSQL "down" is a closed port, or a TCP proxy in front of the shared
server that this test cuts and restores (the server itself is never stopped).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from textwire.config import Settings
from textwire.examples.helpdesk import create_bot
from textwire.storage.sql import SqlStore
from textwire.web import create_app

from .conftest import ACCOUNT_SID, AUTH_TOKEN, BOT_NUMBER, PUBLIC_URL, make_form, sign


def _settings(url: str) -> Settings:
    return Settings(
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_phone_number=BOT_NUMBER,
        public_url=PUBLIC_URL,
        database_url=url,
    )


def _post(app: Flask, path: str, form: dict[str, str]) -> tuple[int, str, str]:
    response = app.test_client().post(
        path,
        data=form,
        headers={"X-Twilio-Signature": sign(PUBLIC_URL + path, form)},
    )
    return (
        response.status_code,
        response.headers.get("Retry-After", ""),
        response.get_data(as_text=True),
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(params=["sqlite", "postgres"])
def down_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        # A file that cannot be opened: its directory does not exist.
        return f"sqlite:///{tmp_path / 'gone' / 'textwire.db'}"
    return (
        f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/test"
        "?connect_timeout=5"
    )


def test_webhooks_answer_503_with_retry_after_when_the_database_is_down(
    down_url: str,
) -> None:
    store = SqlStore(down_url)
    app = create_app(_settings(down_url), bot=create_bot(), store=store)
    try:
        code, retry_after, text = _post(app, "/twilio/sms", make_form("help"))
        assert (code, retry_after) == (503, "5"), text
        assert "database" in text and "Traceback" not in text
        status = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"}
        code, retry_after, _ = _post(app, "/twilio/status", status)
        assert (code, retry_after) == (503, "5")
        assert app.test_client().get("/healthz").status_code == 503
    finally:
        store.dispose()


class CuttableProxy:
    """A TCP proxy on loopback in front of ``upstream`` that can be cut (every
    connection dropped, new ones refused) and restored on the same port."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = _closed_port()
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self.listener = listener
        self.thread = threading.Thread(target=self._accept, args=(listener,))
        self.thread.daemon = True
        self.thread.start()

    def cut(self) -> None:
        assert self.listener is not None and self.thread is not None
        listener, self.listener = self.listener, None
        # Wake accept() with one last connection, then close everything.
        socket.create_connection(("127.0.0.1", self.port), timeout=10).close()
        self.thread.join(timeout=10)
        listener.close()
        with self.lock:
            doomed, self.open = self.open, []
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            client, _ = listener.accept()
            if self.listener is not listener:
                client.close()
                return
            server = socket.create_connection(self.upstream, timeout=10)
            server.settimeout(None)
            with self.lock:
                self.open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def proxy() -> Iterator[CuttableProxy]:
    proxy = CuttableProxy(("127.0.0.1", 5432))
    yield proxy
    if proxy.listener is not None:
        proxy.cut()


@pytest.mark.postgres
def test_a_postgresql_restart_gives_503s_then_200s_and_loses_nothing(
    postgres_url: str, proxy: CuttableProxy
) -> None:
    # Given a migrated database reached through a proxy we control
    url = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    assert url != postgres_url
    store = SqlStore(url + "&connect_timeout=5")
    store.upgrade()
    app = create_app(_settings(url), bot=create_bot(), store=store)
    try:
        first, second = make_form("help"), make_form("hours")
        assert _post(app, "/twilio/sms", first)[0] == 200
        # When PostgreSQL goes away (every connection dropped, none accepted)
        proxy.cut()
        code, retry_after, _ = _post(app, "/twilio/sms", second)
        # Then the webhook is told to come back, not that it was stored
        assert (code, retry_after) == (503, "5")
        # And once it is back, Twilio's retry is stored, exactly once
        proxy.restore()
        assert _post(app, "/twilio/sms", second)[0] == 200
        assert _post(app, "/twilio/sms", second)[0] == 200  # a duplicate
        sids = [row["sid"] for row in store.messages.all("inbound")]
        assert sids == [first["MessageSid"], second["MessageSid"]]
    finally:
        store.dispose()


@pytest.mark.postgres
def test_a_dead_pooled_connection_is_replaced_without_a_503(
    postgres_url: str, proxy: CuttableProxy
) -> None:
    # Given webhooks stored through a proxy, their connections kept in the pool
    url = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    store = SqlStore(url + "&connect_timeout=5")
    store.upgrade()
    app = create_app(_settings(url), bot=create_bot(), store=store)
    try:
        forms = [make_form("help") for _ in range(3)]
        assert _post(app, "/twilio/sms", forms[0])[0] == 200
        # When the server restarts between two webhooks (every pooled
        # connection dead, new ones accepted at once)
        proxy.cut()
        proxy.restore()
        # Then the next webhooks are stored on new connections, not told 503
        assert [_post(app, "/twilio/sms", form)[0] for form in forms[1:]] == [200, 200]
        sids = [row["sid"] for row in store.messages.all("inbound")]
        assert sids == [form["MessageSid"] for form in forms]
    finally:
        store.dispose()

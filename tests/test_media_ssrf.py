"""The media-host check and the HEAD probe never reach a private address.

With ``TEXTWIRE_PROBE_MEDIA`` on, ``http://0x7f000001``, ``http://2130706433``,
``http://0177.0.0.1`` and ``http://127.1`` passed ``check_media_host`` and the
probe reached a listener on 127.0.0.1; the probe also followed a 302 to
127.0.0.1 and probed a name resolving to loopback (issue 12). Here a real
listener on loopback counts every connection and request it gets.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from textwire.config import Settings
from textwire.errors import InvalidMessage
from textwire.media import check_media_host, is_public_address, probe_media
from textwire.service import queue_message
from textwire.storage.sql import SqlStore
from textwire.transports.fake import FakeTransport
from textwire.worker import SendWorker


class Listener(ThreadingHTTPServer):
    """Answers HEAD with a small PNG's headers (or a redirect to ``location``),
    counting the connections it accepted and the requests it read."""

    daemon_threads = True

    def __init__(self, location: str | None = None) -> None:
        self.accepted = 0
        self.requests = 0
        self.location = location
        super().__init__(("127.0.0.1", 0), _Handler)
        self.port = self.server_address[1]
        self.thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def get_request(self) -> tuple[socket.socket, Any]:
        request = super().get_request()
        self.accepted += 1
        return request

    @property
    def reached(self) -> bool:
        return self.accepted > 0 or self.requests > 0

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(timeout=10)


class _Handler(BaseHTTPRequestHandler):
    server: Listener

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.server.requests += 1
        if self.server.location:
            self.send_response(302)
            self.send_header("Location", self.server.location)
        else:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "1024")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


NOTATIONS = ["0x7f000001", "2130706433", "0177.0.0.1", "127.1", "0x7f.1"]


@pytest.mark.parametrize(
    "host",
    [
        *NOTATIONS,
        "127.000.000.001",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[64:ff9b::a00:1]",  # NAT64 of 10.0.0.1
        "[2002:7f00:1::1]",  # 6to4 of 127.0.0.1
        "0",
        "224.0.0.1",
        "100.64.0.1",
    ],
)
def test_every_notation_of_a_private_address_is_refused(host: str) -> None:
    with pytest.raises(InvalidMessage, match="private, loopback or reserved"):
        check_media_host(f"http://{host}/a.png")


def test_public_addresses_stay_public() -> None:
    assert is_public_address("93.184.216.34")
    assert is_public_address("::ffff:93.184.216.34")
    assert is_public_address("2606:4700::1")
    assert not is_public_address("::1")
    assert not is_public_address("169.254.169.254")


@pytest.mark.parametrize("host", [*NOTATIONS, "localhost"])
def test_the_probe_never_connects_to_a_private_address(
    listener: Listener, host: str
) -> None:
    (problem,) = probe_media([f"http://{host}:{listener.port}/a.png"], timeout=10)
    assert "refused" in problem and "127.0.0.1" in problem
    assert not listener.reached


def test_each_redirect_hop_is_checked(listener: Listener) -> None:
    # Given the bot's own server (trusted, though on loopback) redirecting to
    # another loopback port
    own = Listener(location=f"http://127.0.0.1:{listener.port}/a.png")
    try:
        own_url = f"http://127.0.0.1:{own.port}"
        (problem,) = probe_media(
            [own_url + "/media/a.png"], timeout=10, own_url=own_url
        )
    finally:
        own.close()
    # Then the first hop was made, the second refused before connecting
    assert own.requests == 1
    assert "refused" in problem
    assert not listener.reached


def test_a_name_that_resolves_elsewhere_the_second_time_gains_nothing(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a name whose first answer is public and whose later ones are
    # loopback (DNS rebinding), at the true edge: the resolver
    real = socket.getaddrinfo
    answers = iter(["93.184.216.34"])

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "media.rebind.test":
            return real(host, port, *args, **kwargs)
        address = next(answers, "127.0.0.1")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    url = f"http://media.rebind.test:{listener.port}/a.png"
    (problem,) = probe_media([url], timeout=10)
    # Then the address actually connected to was checked: no request was sent
    assert "refused" in problem and "127.0.0.1" in problem
    assert listener.requests == 0


def test_private_addresses_are_probed_when_allowed(listener: Listener) -> None:
    url = f"http://127.0.0.1:{listener.port}/a.png"
    assert probe_media([url], timeout=10, allow_private=True) == []
    assert listener.requests == 1


def test_the_worker_refuses_private_media_without_reaching_it(
    store: SqlStore, settings: Settings, listener: Listener
) -> None:
    url = f"http://0x7f000001:{listener.port}/a.png"
    queued = settings.replace(allow_private_media=True)
    (outbox_id,) = queue_message(
        store, to="+14155550199", body="look", media=[url], settings=queued
    )
    fake = FakeTransport()
    worker = SendWorker(store, fake, settings=settings.replace(probe_media=True))
    worker.run_once()
    worker.stop()
    row = store.outbox.row(outbox_id)
    assert row is not None and row["status"] == "failed"
    assert "refused" in row["last_error"]
    assert fake.sent == []
    assert not listener.reached

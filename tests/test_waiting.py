"""The shared "wait for a server" helper (tests/waiting.py), against a real
listener on loopback that misbehaves the way a server still starting up does."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .waiting import ANY_ANSWER, ServerNotReady, wait_for_server

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n"
    b"Connection: close\r\n\r\nbusy"
)


class Scripted:
    """A loopback listener that treats its n-th connection as ``script[n]``:
    ``silent`` (accepted, never answered), ``garbage`` (not HTTP), ``reset``
    (closed at once), or raw bytes to answer; after the script, 200."""

    def __init__(self, script: list[str | bytes]) -> None:
        self.script = list(script)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/healthz"
        self.held: list[socket.socket] = []
        self.connections = 0
        self.closing = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.closing:
                conn.close()
                return
            self.connections += 1
            step = self.script.pop(0) if self.script else OK
            if step == "silent":
                self.held.append(conn)  # answered by nobody until close()
                continue
            with conn:
                conn.recv(65536)
                if step == "garbage":
                    conn.sendall(b"\x00\x01 not http at all\r\n\r\n")
                elif step != "reset":
                    assert isinstance(step, bytes)
                    conn.sendall(step)

    def close(self) -> None:
        # Closing a listening socket does not wake accept(): a last
        # connection does.
        self.closing = True
        socket.create_connection(self.sock.getsockname(), timeout=10).close()
        self.thread.join(timeout=10)
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def scripted() -> Iterator[type[Scripted]]:
    made: list[Scripted] = []

    class Made(Scripted):
        def __init__(self, script: list[str | bytes]) -> None:
            super().__init__(script)
            made.append(self)

    yield Made
    for server in made:
        server.close()


def test_a_server_that_accepts_but_does_not_answer_yet_is_waited_for(
    scripted: type[Scripted],
) -> None:
    # Given a server whose first connection is accepted and left unanswered
    # (a bound socket whose app is still loading: the 1 s ReadTimeout that
    # broke the gunicorn fixture on a busy machine)
    server = scripted(["silent"])
    # When we wait with attempts shorter than that silence
    wait_for_server(server.url, attempt_timeout=0.5)
    # Then the timeout was one more "not yet", and the next attempt got in
    assert server.connections == 2


def test_every_kind_of_not_yet_is_retried(scripted: type[Scripted]) -> None:
    server = scripted(["reset", "garbage", BUSY, "silent", BUSY])
    wait_for_server(server.url, attempt_timeout=0.5)
    assert server.connections == 6


def test_any_answer_can_be_enough(scripted: type[Scripted]) -> None:
    server = scripted(["reset", BUSY])
    wait_for_server(server.url, ready=ANY_ANSWER)
    assert server.connections == 2


def test_giving_up_says_why_and_shows_the_servers_log(
    scripted: type[Scripted], tmp_path: Path
) -> None:
    server = scripted([BUSY] * 10_000)
    log = tmp_path / "server.log"
    log.write_text("x" * 10_000 + "\nERROR database not reachable\n")
    with pytest.raises(ServerNotReady) as caught:
        wait_for_server(server.url, log=log, what="the web", deadline=0.5)
    message = str(caught.value)
    assert "the web: not ready within 0.5 s (last answer HTTP 503)" in message
    assert message.endswith("ERROR database not reachable\n")
    assert "x" * 5000 not in message  # only the end of a long log


def test_a_server_process_that_exits_stops_the_wait_with_its_log(
    tmp_path: Path,
) -> None:
    # Given a server process that dies at start (nothing will ever listen)
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "print('cannot bind: in use'); raise SystemExit(3)"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/healthz"
    # Then the wait ends with its exit code and log, not at the deadline
    with pytest.raises(ServerNotReady, match="exited with 3") as caught:
        wait_for_server(closed, proc=proc, log=log)
    assert "cannot bind: in use" in str(caught.value)

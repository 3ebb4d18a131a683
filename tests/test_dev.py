"""``textwire dev``: the tunnel, the number's webhooks, setup → serve → teardown.

Twilio is the emulator over real HTTP (the unmodified twilio client talks to
it); ngrok is replaced at the SDK boundary only (this machine cannot reach
ngrok's service): a fake ``TunnelOpener``, or ``ngrok.forward`` itself
monkeypatched to raise what ngrok-python raises. ``run_dev`` is driven
in-process with a stop event; two tests run the real command in a subprocess
and stop it with SIGTERM (restored) and SIGKILL (restored by the next start).
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from rich.console import Console
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from textwire.cli import main
from textwire.config import Settings
from textwire.dev import DevOptions, DevSummary, run_dev
from textwire.errors import DevSetupError, NumberSetupError, TunnelError
from textwire.phone import mask
from textwire.server import Stack, build_stack
from textwire.transports.twilio import TwilioTransport
from textwire.tunnel import (
    AUTHTOKEN_URL,
    DevStateFile,
    NumberWebhooks,
    OpenedTunnel,
    SavedNumber,
    find_number,
    local_address,
    map_ngrok_error,
    ngrok_opener,
    open_tunnel,
    point_number,
    pretty_number,
    restore_number,
)

from .live_fixtures import clean_env, live_settings
from .sandbox import conftest as sandbox
from .sandbox.conftest import (
    ACCOUNT_SID,
    ANA,
    AUTH_TOKEN,
    NUMBER,
    OTHER_NUMBER,
    Emulator,
    EmulatorFactory,
)

# The emulator's fixtures, served over real HTTP (tests/sandbox/conftest.py).
make_emulator = sandbox.make_emulator
emulator = sandbox.emulator

PROD = NumberWebhooks(
    sms_url="https://prod.example.com/sms",
    sms_method="GET",
    sms_fallback_url="https://prod.example.com/fallback",
    sms_fallback_method="POST",
    status_callback="https://prod.example.com/voice-status",
    status_callback_method="POST",
)
TUNNEL = "https://abc123.ngrok.app"
NGROK_TOKEN = "ngrok-test-token-1234"
BAD_TOKEN_ERROR = ValueError(
    "failed to connect session",
    "The authtoken you specified does not look like a proper ngrok authtoken.\n"
    f"Your authtoken: {NGROK_TOKEN}\n"
    "Instructions to install your authtoken are on your ngrok dashboard:\n"
    "https://dashboard.ngrok.com/get-started/your-authtoken",
    "ERR_NGROK_105",
)
WAIT = 30.0  # seconds; every wait is bounded


def _set_webhooks(emulator: Emulator, hooks: NumberWebhooks) -> None:
    number = emulator.number
    with emulator.state.lock:
        number.sms_url = hooks.sms_url or None
        number.sms_method = hooks.sms_method
        number.sms_fallback_url = hooks.sms_fallback_url or None
        number.sms_fallback_method = hooks.sms_fallback_method
        number.status_callback = hooks.status_callback or None
        number.status_callback_method = hooks.status_callback_method


def _webhooks(emulator: Emulator) -> NumberWebhooks:
    number = emulator.number
    with emulator.state.lock:
        return NumberWebhooks(
            sms_url=number.sms_url or "",
            sms_method=number.sms_method,
            sms_fallback_url=number.sms_fallback_url or "",
            sms_fallback_method=number.sms_fallback_method,
            status_callback=number.status_callback or "",
            status_callback_method=number.status_callback_method,
        )


@pytest.fixture
def prod(emulator: Emulator) -> Emulator:
    """The emulator, its number wired to a production bot."""
    _set_webhooks(emulator, PROD)
    return emulator


@pytest.fixture
def client(emulator: Emulator) -> Client:
    return emulator.client()


@pytest.fixture
def state_file(tmp_path: Path) -> DevStateFile:
    return DevStateFile(tmp_path / ".textwire" / "dev-state.json")


class FakeNgrok:
    """A TunnelOpener: records its calls, returns ``url`` or raises ``error``."""

    def __init__(self, url: str = TUNNEL, error: BaseException | None = None):
        self.url = url
        self.error = error
        self.calls: list[tuple[str, str, str | None]] = []
        self.closed = threading.Event()

    def __call__(self, addr: str, *, authtoken: str, domain: str | None) -> Any:
        self.calls.append((addr, authtoken, domain))
        if self.error is not None:
            raise self.error
        return OpenedTunnel(self.url, self.closed.set)


def _dead_pid() -> int:
    """The pid of a process that has ended (what a crashed run leaves)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=WAIT)
    return proc.pid


# -- pointing and restoring the number ------------------------------------------


def test_point_number_sets_the_webhook_and_returns_the_previous_ones(
    prod: Emulator, client: Client, state_file: DevStateFile
) -> None:
    previous = point_number(client, "(415) 555-0100", TUNNEL, state_file=state_file)

    assert previous == PROD
    now = _webhooks(prod)
    assert (now.sms_url, now.sms_method) == (TUNNEL + "/twilio/sms", "POST")
    # Only SmsUrl and SmsMethod change.
    assert now.sms_fallback_url == PROD.sms_fallback_url
    assert now.status_callback == PROD.status_callback
    saved = state_file.load()
    assert saved is not None
    assert (saved.account_sid, saved.number_sid, saved.phone_number) == (
        ACCOUNT_SID,
        prod.number.sid,
        NUMBER,
    )
    assert saved.previous == PROD
    assert saved.webhook_url == TUNNEL + "/twilio/sms"
    assert saved.pid == os.getpid()


def test_point_number_can_set_the_numbers_status_callback(
    prod: Emulator, client: Client
) -> None:
    point_number(client, NUMBER, TUNNEL, status_callback=TUNNEL + "/twilio/status")
    assert _webhooks(prod).status_callback == TUNNEL + "/twilio/status"


def test_the_previous_webhooks_are_saved_before_the_number_changes(
    prod: Emulator, client: Client, state_file: DevStateFile
) -> None:
    seen: list[SavedNumber | None] = []
    numbers = client.incoming_phone_numbers

    class Spy:
        """incoming_phone_numbers, noting the state file at each update."""

        def list(self, **kwargs: Any) -> Any:
            return numbers.list(**kwargs)

        def __call__(self, sid: str) -> Any:
            context = numbers(sid)

            class Context:
                def update(self, **changes: Any) -> Any:
                    seen.append(state_file.load())
                    raise requests.ConnectionError("the line went dead")

                def fetch(self) -> Any:
                    return context.fetch()

            return Context()

    class SpyClient:
        account_sid = ACCOUNT_SID
        api = client.api
        incoming_phone_numbers = Spy()

    with pytest.raises(NumberSetupError, match="could not reach Twilio's API"):
        point_number(SpyClient(), NUMBER, TUNNEL, state_file=state_file)
    assert seen and seen[0] is not None and seen[0].previous == PROD


def test_restore_number_puts_every_webhook_back(
    prod: Emulator, client: Client, state_file: DevStateFile
) -> None:
    point_number(client, NUMBER, TUNNEL, state_file=state_file)
    saved = state_file.load()
    assert saved is not None

    outcome = restore_number(client, saved)

    assert outcome.restored and outcome.sms_url == PROD.sms_url
    assert _webhooks(prod) == PROD


def test_restore_number_puts_back_a_number_without_webhooks(
    emulator: Emulator, client: Client, state_file: DevStateFile
) -> None:
    previous = point_number(client, NUMBER, TUNNEL, state_file=state_file)
    assert previous.sms_url == ""
    saved = state_file.load()
    assert saved is not None
    assert restore_number(client, saved).restored
    assert emulator.number.sms_url is None


def test_restore_leaves_alone_a_webhook_changed_since(
    prod: Emulator, client: Client, state_file: DevStateFile
) -> None:
    point_number(client, NUMBER, TUNNEL, state_file=state_file)
    prod.number.sms_url = "https://someone-else.example.com/sms"
    saved = state_file.load()
    assert saved is not None

    outcome = restore_number(client, saved)

    assert not outcome.restored
    assert "changed to https://someone-else.example.com/sms" in outcome.reason
    assert prod.number.sms_url == "https://someone-else.example.com/sms"
    assert restore_number(client, saved, force=True).restored
    assert _webhooks(prod) == PROD


def test_a_number_the_account_does_not_have_is_named_with_the_ones_it_has(
    emulator: Emulator, client: Client
) -> None:
    with pytest.raises(NumberSetupError) as caught:
        find_number(client, "+1 415 555 0177")
    error = caught.value
    assert error.message == (
        f"{mask('+14155550177')} is not a number of account {ACCOUNT_SID}: "
        f"it has {mask(NUMBER)}, {mask(OTHER_NUMBER)}"
    )
    assert "TWILIO_PHONE_NUMBER" in error.hint
    assert "+14155550177" not in str(error) and NUMBER not in str(error)


def test_a_number_without_sms_is_refused_before_anything_changes(
    prod: Emulator, client: Client, state_file: DevStateFile
) -> None:
    prod.number.sms = False
    with pytest.raises(NumberSetupError, match="has no SMS capability") as caught:
        point_number(client, NUMBER, TUNNEL, state_file=state_file)
    assert "SMS-capable" in caught.value.hint
    assert _webhooks(prod) == PROD
    assert state_file.load() is None


def test_wrong_credentials_are_named_with_20003(emulator: Emulator) -> None:
    client = emulator.client(password="not-the-token")
    with pytest.raises(NumberSetupError) as caught:
        find_number(client, NUMBER)
    assert caught.value.message == (
        "Twilio rejected TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN (20003)"
    )
    assert caught.value.code == 20003
    assert "console.twilio.com" in caught.value.hint


def test_an_unreachable_twilio_api_is_named(emulator: Emulator) -> None:
    client = emulator.client()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    client.api.base_url = closed
    with pytest.raises(NumberSetupError, match="could not reach Twilio's API at"):
        find_number(client, NUMBER)


def test_a_number_that_is_not_a_phone_number_is_refused(client: Client) -> None:
    with pytest.raises(NumberSetupError, match="TWILIO_PHONE_NUMBER is not a phone"):
        find_number(client, "12")


def test_numbers_print_the_way_people_type_them() -> None:
    assert pretty_number("+14155550100") == "+1 415 555 0100"
    assert pretty_number("+442079460958") == "+44 20 7946 0958"


# -- the tunnel -------------------------------------------------------------------


def test_open_tunnel_forwards_to_the_local_server() -> None:
    ngrok = FakeNgrok()
    tunnel = open_tunnel(
        host="0.0.0.0",
        port=8123,
        authtoken=NGROK_TOKEN,
        domain="bot.ngrok.app",
        opener=ngrok,
    )
    assert tunnel.url == TUNNEL
    assert ngrok.calls == [("http://127.0.0.1:8123", NGROK_TOKEN, "bot.ngrok.app")]
    tunnel.close()
    tunnel.close()
    assert ngrok.closed.is_set()
    assert local_address("localhost", 80) == "http://localhost:80"
    assert local_address("::", 80) == "http://[::1]:80"
    assert local_address("fe80::1", 80) == "http://[fe80::1]:80"


def test_no_authtoken_is_a_clear_line_and_ngrok_is_not_called() -> None:
    ngrok = FakeNgrok()
    with pytest.raises(TunnelError) as caught:
        open_tunnel(host="127.0.0.1", port=8000, authtoken=None, opener=ngrok)
    assert caught.value.message == "NGROK_AUTHTOKEN is not set"
    assert AUTHTOKEN_URL in caught.value.hint and "--public-url" in caught.value.hint
    assert ngrok.calls == []


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            BAD_TOKEN_ERROR,
            f"ngrok rejected NGROK_AUTHTOKEN: get yours at {AUTHTOKEN_URL}",
        ),
        (
            ValueError(
                "failed to connect session",
                "The authtoken you specified is properly formed, but it is invalid.",
                "ERR_NGROK_107",
            ),
            f"ngrok rejected NGROK_AUTHTOKEN: get yours at {AUTHTOKEN_URL}",
        ),
        (
            ValueError(
                "failed to connect session",
                "authentication failed: Your account is limited to 1 simultaneous "
                "ngrok agent sessions.",
                "ERR_NGROK_108",
            ),
            "ngrok allows your account a limited number of agent sessions at a "
            "time, and they are in use",
        ),
        (
            ValueError(
                "failed to connect session", "failed to establish tcp connection"
            ),
            "could not reach ngrok's service (failed to establish tcp connection)",
        ),
        (
            ValueError(
                "failed to start listener",
                "You must reserve the domain first.",
                "ERR_NGROK_15013",
            ),
            "ngrok would not serve the domain bot.ngrok.app: You must reserve the "
            "domain first. (ERR_NGROK_15013)",
        ),
        (
            ValueError("failed to connect session", "Something new.", "ERR_NGROK_9999"),
            "ngrok failed: Something new. (ERR_NGROK_9999)",
        ),
    ],
)
def test_every_ngrok_sdk_error_becomes_one_line_with_a_hint(
    error: ValueError, line: str
) -> None:
    ngrok = FakeNgrok(error=error)
    with pytest.raises(TunnelError) as caught:
        open_tunnel(
            host="127.0.0.1",
            port=8000,
            authtoken=NGROK_TOKEN,
            domain="bot.ngrok.app",
            opener=ngrok,
        )
    assert caught.value.message == line
    assert caught.value.hint
    assert NGROK_TOKEN not in str(caught.value)


def test_the_real_opener_calls_the_ngrok_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    import ngrok

    calls: list[tuple[object, dict[str, object]]] = []
    disconnected: list[str | None] = []

    class Listener:
        def url(self) -> str:
            return "https://xyz.ngrok-free.app"

    def forward(addr: object, **options: object) -> Listener:
        calls.append((addr, options))
        return Listener()

    monkeypatch.setattr(ngrok, "forward", forward)
    monkeypatch.setattr(ngrok, "disconnect", disconnected.append)

    tunnel = ngrok_opener("http://127.0.0.1:8000", authtoken=NGROK_TOKEN, domain=None)
    assert tunnel.url == "https://xyz.ngrok-free.app"
    assert calls == [
        ("http://127.0.0.1:8000", {"authtoken": NGROK_TOKEN, "domain": None})
    ]
    tunnel.close()
    assert disconnected == ["https://xyz.ngrok-free.app"]


def test_a_bad_token_through_the_real_opener(monkeypatch: pytest.MonkeyPatch) -> None:
    import ngrok

    def forward(addr: object, **options: object) -> object:
        raise BAD_TOKEN_ERROR

    monkeypatch.setattr(ngrok, "forward", forward)
    with pytest.raises(TunnelError) as caught:
        open_tunnel(host="127.0.0.1", port=8000, authtoken=NGROK_TOKEN)
    assert caught.value.message.startswith("ngrok rejected NGROK_AUTHTOKEN")


def test_the_real_sdk_raises_what_is_mapped() -> None:
    """ngrok-python itself, with a token ngrok cannot accept: offline it cannot
    connect, online ngrok rejects the token; either way one TunnelError."""
    outcome: queue.Queue[BaseException | None] = queue.Queue()

    def attempt() -> None:
        try:
            tunnel = open_tunnel(
                host="127.0.0.1", port=9, authtoken="not-a-real-ngrok-token"
            )
            tunnel.close()
            outcome.put(None)
        except BaseException as exc:
            outcome.put(exc)

    threading.Thread(target=attempt, daemon=True).start()
    error = outcome.get(timeout=60)
    assert isinstance(error, TunnelError), error
    assert error.message.startswith(
        ("could not reach ngrok's service", "ngrok rejected NGROK_AUTHTOKEN")
    )
    assert "not-a-real-ngrok-token" not in str(error)


def test_a_missing_sdk_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ngrok", None)
    with pytest.raises(TunnelError) as caught:
        open_tunnel(host="127.0.0.1", port=8000, authtoken=NGROK_TOKEN)
    assert caught.value.message == "the ngrok agent SDK is not installed"
    assert "pip install 'textwire[ngrok]'" in caught.value.hint


def test_a_sdk_error_without_arguments_is_still_a_line() -> None:
    assert map_ngrok_error(ValueError()).message == "ngrok failed: ValueError"


def test_a_corrupt_state_file_is_named(state_file: DevStateFile) -> None:
    state_file.path.parent.mkdir(parents=True)
    state_file.path.write_text("{not json", encoding="utf-8")
    with pytest.raises(DevSetupError, match="is not a textwire dev state file"):
        state_file.load()


# -- run_dev: setup → serve until stopped → teardown ---------------------------------


def _no_worker(live: Settings) -> Stack:
    return build_stack(live, None)


def _with_worker(live: Settings) -> Stack:
    transport = TwilioTransport(
        account_sid=live.twilio_account_sid or "",
        auth_token=live.twilio_auth_token or "",
        from_=live.twilio_phone_number,
        api_url=live.twilio_api_url,
        timeout=live.twilio_timeout,
        public_url=live.public_url,
    )
    return build_stack(live, transport)


class Dev:
    """Runs ``run_dev`` in the test's thread; ``on_ready`` does the checks."""

    def __init__(self, emulator: Emulator, tmp_path: Path) -> None:
        self.emulator = emulator
        self.settings = live_settings(emulator, tmp_path)
        self.state = DevStateFile(tmp_path / ".textwire" / "dev-state.json")
        self.stop = threading.Event()
        self.console = Console(record=True, width=120, force_terminal=False)
        self.sock: socket.socket | None = None

    @property
    def output(self) -> str:
        return self.console.export_text()

    def run(
        self,
        on_ready: Callable[[DevSummary], None] | None = None,
        *,
        opener: Any = None,
        public_url: str | None = None,
        decide: Callable[[SavedNumber], bool] | None = None,
        build: Callable[[Settings], Stack] = _no_worker,
        make_server: Any = None,
    ) -> DevSummary | None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        port = self.sock.getsockname()[1]

        def ready(summary: DevSummary) -> None:
            try:
                if on_ready is not None:
                    on_ready(summary)
            finally:
                self.stop.set()

        def refuse(saved: SavedNumber) -> bool:
            raise AssertionError("no state file expected")

        extra: dict[str, Any] = {}
        if make_server is not None:
            extra["make_server"] = make_server
        client = self.emulator.client()
        return run_dev(
            self.settings,
            DevOptions(
                host="127.0.0.1",
                port=port,
                public_url=public_url,
                state_path=self.state.path,
                threads=4,
            ),
            sock=self.sock,
            stop=self.stop,
            build_stack=build,
            decide_stale=decide or refuse,
            console=self.console,
            client=client,
            opener=opener if opener is not None else FakeNgrok(),
            on_ready=ready,
            poll_interval=0.05,
            **extra,
        )


@pytest.fixture
def dev(prod: Emulator, tmp_path: Path) -> Iterator[Dev]:
    runner = Dev(prod, tmp_path)
    yield runner
    if runner.sock is not None:
        assert runner.sock.fileno() == -1, "the socket was left open"


def test_dev_points_the_number_serves_with_the_tunnel_url_and_restores_on_exit(
    dev: Dev, prod: Emulator
) -> None:
    ngrok = FakeNgrok()
    checks: list[str] = []

    def on_ready(summary: DevSummary) -> None:
        assert prod.number.sms_url == TUNNEL + "/twilio/sms"
        assert prod.number.sms_method == "POST"
        assert dev.state.load() is not None
        assert summary.previous == PROD
        assert summary.webhook_url == TUNNEL + "/twilio/sms"
        assert summary.status_url == TUNNEL + "/twilio/status"
        # The app checks signatures against the tunnel's URL, not its own.
        local = summary.local_url + "/twilio/selftest"
        form = {"Nonce": "n1"}
        validator = RequestValidator(AUTH_TOKEN)
        for signed_for, expected in (
            (TUNNEL + "/twilio/selftest", 200),
            (local, 403),
        ):
            response = requests.post(
                local,
                data=form,
                headers={
                    "X-Twilio-Signature": validator.compute_signature(signed_for, form)
                },
                timeout=WAIT,
            )
            assert response.status_code == expected, response.text
            response.close()
        checks.append("served")

    summary = dev.run(on_ready, opener=ngrok)

    assert checks == ["served"]
    assert summary is not None
    assert ngrok.calls == [(summary.local_url, NGROK_TOKEN, None)]
    assert ngrok.closed.is_set()
    assert _webhooks(prod) == PROD
    assert dev.state.load() is None
    text = dev.output
    assert "Text HELP to +1 415 555 0100" in text
    assert "webhook set" in text and TUNNEL + "/twilio/sms (POST)" in text
    assert "status callback" in text and TUNNEL + "/twilio/status" in text
    assert "restores https://prod.example.com/sms (GET)" in text
    assert "restored +1 415 555 0100: https://prod.example.com/sms (GET)" in text


def test_dev_end_to_end_a_text_gets_its_reply(
    make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    """The "tunnel" is the local URL itself: the emulator's carrier posts the
    text to the webhook dev set, the bot's reply goes out through the worker."""
    emulator = make_emulator()
    runner = Dev(emulator, tmp_path)
    events = emulator.state.subscribe()
    replies: list[Any] = []

    class LocalTunnel(FakeNgrok):
        def __call__(self, addr: str, *, authtoken: str, domain: str | None) -> Any:
            self.url = addr
            return super().__call__(addr, authtoken=authtoken, domain=domain)

    def on_ready(summary: DevSummary) -> None:
        emulator.carrier.send_from_phone(ANA.number, NUMBER, "help")
        while not replies:
            event = events.get(timeout=WAIT)
            message = event.get("message") or {}
            if event["type"] == "message" and message.get("direction") == (
                "outbound-api"
            ):
                replies.append(message)

    try:
        runner.run(on_ready, opener=LocalTunnel(), build=_with_worker)
    finally:
        emulator.state.unsubscribe(events)
    (reply,) = replies
    assert reply["to"] == ANA.number and reply["from"] == NUMBER
    assert reply["body"].startswith("Hi from the textwire help desk!")
    # Media URLs are under the tunnel's URL (here the local server's).
    assert [m["url"].rsplit("/", 1)[1] for m in reply["media"]] == [
        "logo.png",
        "helpdesk.png",
    ]
    assert all(m["url"].startswith("http://127.0.0.1:") for m in reply["media"])
    assert emulator.number.sms_url is None  # restored: it had none


def test_public_url_skips_the_tunnel(dev: Dev, prod: Emulator) -> None:
    ngrok = FakeNgrok(error=AssertionError("ngrok must not be called"))

    def on_ready(summary: DevSummary) -> None:
        assert prod.number.sms_url == "https://mine.example.com/twilio/sms"
        assert summary.tunnel == "your own tunnel (--public-url)"

    dev.run(on_ready, opener=ngrok, public_url="https://mine.example.com/")
    assert ngrok.calls == []
    assert _webhooks(prod) == PROD


def test_a_startup_failure_after_the_number_changed_restores_it(
    dev: Dev, prod: Emulator
) -> None:
    ngrok = FakeNgrok()
    pointed: list[str | None] = []

    class Broken:
        def __init__(self, app: Any, sock: socket.socket, threads: int) -> None:
            self.sock = sock

        @property
        def running(self) -> bool:
            return False

        def start(self) -> None:
            pointed.append(prod.number.sms_url)
            raise OSError("the server could not start")

        def stop(self) -> None:
            self.sock.close()

    with pytest.raises(OSError, match="could not start"):
        dev.run(opener=ngrok, make_server=Broken)
    assert pointed == [TUNNEL + "/twilio/sms"]
    assert _webhooks(prod) == PROD
    assert dev.state.load() is None
    assert ngrok.closed.is_set()


def test_a_failure_before_the_number_changed_leaves_everything_as_it_was(
    dev: Dev, prod: Emulator
) -> None:
    ngrok = FakeNgrok(error=BAD_TOKEN_ERROR)
    with pytest.raises(TunnelError, match="ngrok rejected NGROK_AUTHTOKEN"):
        dev.run(opener=ngrok)
    assert _webhooks(prod) == PROD
    assert dev.state.load() is None


def test_a_failing_bot_leaves_the_number_alone_and_closes_the_tunnel(
    dev: Dev, prod: Emulator
) -> None:
    ngrok = FakeNgrok()

    def broken(live: Settings) -> Stack:
        raise DevSetupError("the bot cannot be loaded")

    with pytest.raises(DevSetupError, match="the bot cannot be loaded"):
        dev.run(opener=ngrok, build=broken)
    assert _webhooks(prod) == PROD
    assert ngrok.closed.is_set()


def _crashed_run(emulator: Emulator, state: DevStateFile, pid: int) -> str:
    """What a `textwire dev` that died leaves: the number pointed at its dead
    tunnel, the state file with the production webhooks."""
    dead = "https://dead0000.ngrok.app/twilio/sms"
    state.save(
        SavedNumber(
            account_sid=ACCOUNT_SID,
            number_sid=emulator.number.sid,
            phone_number=NUMBER,
            previous=PROD,
            webhook_url=dead,
            pid=pid,
        )
    )
    emulator.number.sms_url = dead
    emulator.number.sms_method = "POST"
    return dead


def test_after_a_crash_restore_previous_restores_before_pointing_again(
    dev: Dev, prod: Emulator
) -> None:
    _crashed_run(prod, dev.state, _dead_pid())
    asked: list[SavedNumber] = []

    def restore(saved: SavedNumber) -> bool:
        asked.append(saved)
        return True

    def on_ready(summary: DevSummary) -> None:
        assert prod.number.sms_url == TUNNEL + "/twilio/sms"
        assert summary.previous == PROD

    dev.run(on_ready, decide=restore)
    assert [saved.previous for saved in asked] == [PROD]
    assert _webhooks(prod) == PROD
    assert dev.state.load() is None
    assert "did not restore +1 415 555 0100" in dev.output


def test_after_a_crash_keep_previous_forgets_the_saved_webhooks(
    dev: Dev, prod: Emulator
) -> None:
    dead = _crashed_run(prod, dev.state, _dead_pid())

    def on_ready(summary: DevSummary) -> None:
        assert summary.previous.sms_url == dead

    dev.run(on_ready, decide=lambda saved: False)
    assert prod.number.sms_url == dead
    assert dev.state.load() is None
    assert "its saved webhooks are forgotten" in dev.output


def test_another_running_dev_is_not_disturbed(dev: Dev, prod: Emulator) -> None:
    dead = _crashed_run(prod, dev.state, os.getppid())  # alive: pytest's parent
    with pytest.raises(DevSetupError, match="another textwire dev"):
        dev.run()
    assert prod.number.sms_url == dead
    assert dev.state.load() is not None


# -- the command ---------------------------------------------------------------------


@pytest.fixture
def cli_env(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    return clean_env(
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_PHONE_NUMBER="(415) 555-0100",
        TEXTWIRE_TWILIO_API_URL=emulator.url,
        TEXTWIRE_TWILIO_TIMEOUT="5",
        TEXTWIRE_DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}",
        NGROK_AUTHTOKEN=NGROK_TOKEN,
    )


def _dev(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(main, ["dev", "--port", "0", *args], env=env)


def test_cli_bad_ngrok_token(
    cli_env: dict[str, str], prod: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ngrok

    def forward(addr: object, **options: object) -> object:
        raise BAD_TOKEN_ERROR

    monkeypatch.setattr(ngrok, "forward", forward)
    result = _dev(cli_env)
    assert result.exit_code == 1, result.output
    assert (
        f"error: ngrok rejected NGROK_AUTHTOKEN: get yours at {AUTHTOKEN_URL}"
        in result.output
    )
    assert NGROK_TOKEN not in result.output
    assert _webhooks(prod) == PROD


def test_cli_no_ngrok_token(cli_env: dict[str, str], prod: Emulator) -> None:
    result = _dev({**cli_env, "NGROK_AUTHTOKEN": ""})
    assert result.exit_code == 1
    assert "error: NGROK_AUTHTOKEN is not set" in result.output
    assert "hint:" in result.output and "--public-url" in result.output


def test_cli_number_not_in_the_account(cli_env: dict[str, str], prod: Emulator) -> None:
    result = _dev({**cli_env, "TWILIO_PHONE_NUMBER": "+1 415 555 0177"})
    assert result.exit_code == 1
    assert f"error: {mask('+14155550177')} is not a number of account" in result.output
    assert mask(OTHER_NUMBER) in result.output


def test_cli_number_without_sms(cli_env: dict[str, str], prod: Emulator) -> None:
    prod.number.sms = False
    result = _dev(cli_env)
    assert result.exit_code == 1
    assert "has no SMS capability" in result.output
    assert _webhooks(prod) == PROD


def test_cli_wrong_credentials(cli_env: dict[str, str], prod: Emulator) -> None:
    result = _dev({**cli_env, "TWILIO_AUTH_TOKEN": "wrong"})
    assert result.exit_code == 1
    assert (
        "error: Twilio rejected TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN (20003)"
        in result.output
    )


def test_cli_missing_settings_are_usage_errors(cli_env: dict[str, str]) -> None:
    result = _dev({**cli_env, "TWILIO_PHONE_NUMBER": ""})
    assert result.exit_code == 2 and "TWILIO_PHONE_NUMBER is not set" in result.output
    result = _dev({**cli_env, "TWILIO_AUTH_TOKEN": ""})
    assert result.exit_code == 2 and "TWILIO_AUTH_TOKEN are not set" in result.output
    result = _dev(cli_env, "--public-url", "ftp://x")
    assert result.exit_code == 2 and "not an absolute http(s) URL" in result.output
    result = _dev(
        cli_env, "--public-url", "https://x.example", "--domain", "a.ngrok.app"
    )
    assert result.exit_code == 2 and "--domain" in result.output
    result = _dev(cli_env, "--domain", "not a domain")
    assert result.exit_code == 2 and "TEXTWIRE_NGROK_DOMAIN" in result.output


def test_cli_a_crashed_run_without_a_terminal_asks_for_a_flag(
    cli_env: dict[str, str], prod: Emulator, tmp_path: Path
) -> None:
    state = DevStateFile(tmp_path / ".textwire" / "dev-state.json")
    dead = _crashed_run(prod, state, _dead_pid())
    result = _dev(cli_env)
    assert result.exit_code == 1
    assert "did not restore" in result.output
    assert "--restore-previous" in result.output and "--keep-previous" in result.output
    assert prod.number.sms_url == dead
    assert state.load() is not None


# -- the real command, stopped by signals --------------------------------------------


class DevProcess:
    """``textwire dev --public-url …`` in a subprocess, its output read in a thread."""

    def __init__(self, env: dict[str, str], cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "textwire", "dev", "--port", "0", *args],
            env={**env, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "Text HELP to" in line:
                self.ready.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self) -> None:
        if not self.ready.wait(WAIT):
            self.kill()
            pytest.fail("textwire dev did not get ready:\n" + self.output)

    def finish(self, sig: int) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=WAIT)
        self.reader.join(timeout=WAIT)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code

    def kill(self) -> None:
        self.finish(signal.SIGKILL)


def test_the_command_restores_the_number_on_sigterm_and_after_sigkill(
    cli_env: dict[str, str], prod: Emulator, tmp_path: Path
) -> None:
    state = DevStateFile(tmp_path / ".textwire" / "dev-state.json")

    first = DevProcess(cli_env, tmp_path, "--public-url", "https://one.example.test")
    first.wait_ready()
    assert prod.number.sms_url == "https://one.example.test/twilio/sms"
    assert state.load() is not None
    assert first.finish(signal.SIGTERM) == 0, first.output
    assert _webhooks(prod) == PROD
    assert state.load() is None
    assert "restored +1 415 555 0100" in first.output

    crashed = DevProcess(cli_env, tmp_path, "--public-url", "https://two.example.test")
    crashed.wait_ready()
    assert crashed.finish(signal.SIGKILL) == -signal.SIGKILL
    assert prod.number.sms_url == "https://two.example.test/twilio/sms"
    assert state.load() is not None

    again = DevProcess(
        cli_env,
        tmp_path,
        "--public-url",
        "https://three.example.test",
        "--restore-previous",
    )
    again.wait_ready()
    assert prod.number.sms_url == "https://three.example.test/twilio/sms"
    assert "did not restore +1 415 555 0100" in again.output
    assert again.finish(signal.SIGINT) == 0, again.output
    assert _webhooks(prod) == PROD
    assert state.load() is None


def test_at_a_terminal_the_person_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from textwire import cli

    class Terminal:
        def isatty(self) -> bool:
            return True

    questions: list[str] = []

    def confirm(text: str, default: bool) -> bool:
        questions.append(text)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        return False

    saved = SavedNumber(
        account_sid=ACCOUNT_SID,
        number_sid="PN" + "0" * 32,
        phone_number=NUMBER,
        previous=PROD,
        webhook_url=TUNNEL + "/twilio/sms",
    )
    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr(cli.click, "confirm", confirm)
    assert cli._stale_decider(None)(saved) is False
    assert questions == [f"Put {mask(NUMBER)}'s previous webhooks back first?"]
    assert cli._stale_decider(True)(saved) is True
    assert len(questions) == 1

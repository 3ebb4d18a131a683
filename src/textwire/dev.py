"""``textwire dev``: the bot on this machine, the Twilio number pointed at it.

``run_dev`` does setup → serve until stopped → teardown:

1. a state file left by a run that died: put its saved webhooks back, or
   forget them (``decide_stale``);
2. find ``TWILIO_PHONE_NUMBER`` in the account; it must do SMS;
3. open the ngrok tunnel (or take ``--public-url``);
4. build what ``textwire run`` serves, with the public URL in its settings
   (signature checks, status callbacks and media URLs use it);
5. save the number's webhooks, then point its SmsUrl at the tunnel;
6. serve until ``stop`` is set (Ctrl-C, SIGTERM) or the server ends.

Teardown runs whatever happened after step 5 started: the number's webhooks
are restored first (so texts go back where they went before), then the
server, the worker and the tunnel are stopped. When restoring fails the state
file stays, and the next ``textwire dev`` offers to restore.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from textwire.config import Settings
from textwire.errors import DevSetupError, NumberSetupError
from textwire.phone import mask
from textwire.server import Stack, WaitressServer
from textwire.tunnel import (
    DEFAULT_STATE_PATH,
    STATUS_PATH,
    WEBHOOK_PATH,
    DevStateFile,
    IncomingNumber,
    NumberWebhooks,
    SavedNumber,
    Tunnel,
    TunnelOpener,
    connect_twilio,
    find_number,
    open_tunnel,
    point_number,
    pretty_number,
    process_alive,
    require_sms,
    restore_number,
)

__all__ = [
    "DevOptions",
    "DevSummary",
    "Server",
    "ServerFactory",
    "describe_webhooks",
    "render_summary",
    "run_dev",
]

logger = logging.getLogger("textwire.dev")


@dataclasses.dataclass(frozen=True, slots=True)
class DevOptions:
    """How ``textwire dev`` runs.

    Attributes:
        host, port: where the local server listens (the socket given to
            ``run_dev`` is bound there; they name it in the summary and tell
            the tunnel where to forward).
        public_url: a tunnel of the user's own: no ngrok.
        domain: a reserved ngrok domain, for a URL that stays the same.
        threads: waitress threads.
        state_path: where the number's previous webhooks are kept.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    domain: str | None = None
    threads: int = 8
    state_path: Path = DEFAULT_STATE_PATH


@dataclasses.dataclass(frozen=True, slots=True)
class DevSummary:
    """What ``textwire dev`` set up, as the summary shows it."""

    number: IncomingNumber
    public_url: str
    local_url: str
    webhook_url: str
    status_url: str
    previous: NumberWebhooks
    tunnel: str
    bot: str
    database: str


class Server(Protocol):
    """What serves the app: started once, stopped once."""

    @property
    def running(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


ServerFactory = Callable[[Any, socket.socket, int], Server]


def _waitress(app: Any, sock: socket.socket, threads: int) -> Server:
    return WaitressServer(app, sock, threads=threads)


def describe_webhooks(webhooks: NumberWebhooks) -> str:
    """``https://x/sms (POST)``, or what Twilio does without one."""
    if webhooks.sms_application_sid:
        return f"TwiML app {webhooks.sms_application_sid}"
    if not webhooks.sms_url:
        return "no SmsUrl (Twilio answers nothing)"
    return f"{webhooks.sms_url} ({webhooks.sms_method or 'POST'})"


def render_summary(summary: DevSummary) -> Panel:
    """The summary a person reads at a glance."""
    number = pretty_number(summary.number.phone_number)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("number", number)
    grid.add_row("tunnel", f"{summary.public_url} → {summary.local_url}")
    grid.add_row("", f"[dim]{summary.tunnel}[/]")
    grid.add_row("webhook set", f"{summary.webhook_url} (POST)")
    grid.add_row("status callback", f"{summary.status_url} [dim](per message)[/]")
    grid.add_row("on exit", "restores " + describe_webhooks(summary.previous))
    grid.add_row("bot", summary.bot)
    grid.add_row("database", summary.database)
    if not summary.number.mms:
        grid.add_row(
            "[yellow]note[/]",
            "this number has no MMS: replies with pictures fail (21621)",
        )
    footer = Text.assemble(
        "Text ",
        ("HELP", "bold"),
        " to ",
        (number, "bold cyan"),
        "  ·  Ctrl-C stops and restores the number",
    )
    return Panel(
        Group(grid, Text(""), footer),
        title="[bold]textwire dev[/]",
        title_align="left",
        border_style="green",
        expand=False,
    )


def run_dev(
    settings: Settings,
    options: DevOptions,
    *,
    sock: socket.socket,
    stop: threading.Event,
    build_stack: Callable[[Settings], Stack],
    decide_stale: Callable[[SavedNumber], bool],
    console: Console,
    client: Any | None = None,
    opener: TunnelOpener | None = None,
    make_server: ServerFactory = _waitress,
    on_ready: Callable[[DevSummary], None] | None = None,
    poll_interval: float = 0.5,
) -> DevSummary | None:
    """Set up, serve until ``stop`` is set, tear down (see the module's doc).

    Args:
        sock: the bound, listening socket to serve on; closed at the end.
        build_stack: what ``run`` serves, for the given (live) settings.
        decide_stale: a run died leaving its saved webhooks: True restores
            them now, False forgets them (may raise ``DevSetupError``).
        client: a twilio Client (built from the settings when omitted).
        opener: the ngrok SDK seam (the real SDK when omitted).
        make_server: builds the server from (app, socket, threads).
        on_ready: called once the number points at the tunnel and the server
            runs.

    Returns:
        The summary, or None when stopped before the number was pointed.

    Raises:
        DevSetupError: a step failed (bad credentials or ngrok token, number
            not found or without SMS …); nothing is left changed.
    """
    close_client: Callable[[], None] | None = None
    if client is None:
        client, close_client = connect_twilio(settings)
    state = DevStateFile(options.state_path)
    tunnel: Tunnel | None = None
    stack: Stack | None = None
    server: Server | None = None
    needs_restore = False
    try:
        _recover(client, state, decide_stale, console)
        if not settings.twilio_phone_number:
            raise NumberSetupError(
                "TWILIO_PHONE_NUMBER is not set",
                hint="set it to the Twilio number to text (any format); "
                "textwire dev points that number at this machine",
            )
        number = find_number(
            client, settings.twilio_phone_number, region=settings.default_region
        )
        require_sms(number)
        if options.public_url:
            public_url = options.public_url.rstrip("/")
            kind = "your own tunnel (--public-url)"
        else:
            with console.status("opening the ngrok tunnel…"):
                tunnel = open_tunnel(
                    host=options.host,
                    port=options.port,
                    authtoken=settings.ngrok_authtoken,
                    domain=options.domain,
                    opener=opener,
                )
            public_url = tunnel.url.rstrip("/")
            kind = "ngrok" + (
                f", reserved domain {options.domain}" if options.domain else ""
            )
        live = settings.replace(public_url=public_url)
        stack = build_stack(live)
        server = make_server(stack.app, sock, options.threads)
        if stop.is_set():
            return None
        needs_restore = True
        previous = point_number(client, number, public_url, state_file=state)
        summary = DevSummary(
            number=number,
            public_url=public_url,
            local_url=f"http://{options.host}:{options.port}",
            webhook_url=public_url + WEBHOOK_PATH,
            status_url=public_url + STATUS_PATH,
            previous=previous,
            tunnel=kind,
            bot=stack.bot.name,
            database=repr(stack.store),
        )
        console.print(render_summary(summary))
        stack.start_worker()
        server.start()
        if on_ready is not None:
            on_ready(summary)
        while server.running and not stop.wait(poll_interval):
            pass
        if not stop.is_set():
            console.print("[bold red]the server stopped[/]")
        return summary
    finally:
        if needs_restore:
            _restore(client, state, console)
        _quietly("stopping the server", server.stop if server else sock.close)
        if stack is not None:
            _quietly("stopping the worker", stack.close)
        if tunnel is not None:
            _quietly("closing the tunnel", tunnel.close)
        if close_client is not None:
            close_client()


def _quietly(what: str, action: Callable[[], None]) -> None:
    try:
        action()
    except Exception:
        logger.exception("%s failed", what)


def _recover(
    client: Any,
    state: DevStateFile,
    decide_stale: Callable[[SavedNumber], bool],
    console: Console,
) -> None:
    """Deal with a state file a run that died left behind."""
    saved = state.load()
    if saved is None:
        return
    number = pretty_number(saved.phone_number)
    if (
        saved.pid != os.getpid()
        and saved.host == socket.gethostname()
        and process_alive(saved.pid)
    ):
        raise DevSetupError(
            f"another textwire dev (pid {saved.pid}) has {mask(saved.phone_number)} "
            f"pointed at {saved.webhook_url}",
            hint=f"stop it first; if pid {saved.pid} is not textwire dev, delete "
            f"{state.path}",
        )
    account = str(getattr(client, "account_sid", "") or "")
    if saved.account_sid and account and saved.account_sid != account:
        raise DevSetupError(
            f"{state.path} holds the previous webhooks of "
            f"{mask(saved.phone_number)} in account {saved.account_sid}, not "
            f"{account}",
            hint="run textwire dev with that account's credentials to restore "
            "them, or delete the file",
        )
    console.print(
        f"[yellow]The last textwire dev (pid {saved.pid}, {saved.saved_at}) did not "
        f"restore {number}[/]: it points at {saved.webhook_url}; before, it had "
        f"{describe_webhooks(saved.previous)}.",
        soft_wrap=True,
    )
    if decide_stale(saved):
        outcome = restore_number(client, saved)
        if outcome.restored:
            console.print(
                f"restored {number}: {describe_webhooks(saved.previous)}",
                soft_wrap=True,
            )
        else:
            console.print(f"[yellow]not restored[/]: {outcome.reason}", soft_wrap=True)
    else:
        console.print(
            f"kept {number} as it is; its saved webhooks are forgotten",
            soft_wrap=True,
        )
    state.clear()


def _restore(client: Any, state: DevStateFile, console: Console) -> None:
    """Put the number back as the state file says; keep the file on failure."""
    try:
        saved = state.load()
        if saved is None:
            return
        number = pretty_number(saved.phone_number)
        outcome = restore_number(client, saved)
    except DevSetupError as exc:
        console.print(
            f"[bold red]could not restore the number:[/] {exc.message}\n"
            f"  its previous webhooks are saved in {state.path}: the next "
            "`textwire dev` offers to restore them",
            soft_wrap=True,
        )
        return
    if outcome.restored:
        console.print(
            f"restored {number}: {describe_webhooks(saved.previous)}", soft_wrap=True
        )
    else:
        console.print(f"[yellow]{number} not restored[/]: {outcome.reason}")
    state.clear()

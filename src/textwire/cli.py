"""The ``textwire`` command: run, sandbox, dev, doctor, send, worker, db upgrade,
broadcast and scheduled (``textwire.broadcast.cli``)."""

from __future__ import annotations

import errno
import math
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from textwire.config import Settings
from textwire.errors import (
    ConfigError,
    DevSetupError,
    InvalidMessage,
    InvalidPhoneNumber,
    RecipientOptedOut,
    StorageError,
)
from textwire.log import configure_logging
from textwire.tunnel import DEFAULT_STATE_PATH

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])

console = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def _fail(message: str, code: int = 1) -> None:
    console.print(f"[bold red]error:[/] {message}")
    sys.exit(code)


def _settings(bot: str | None = None) -> Settings:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if bot:
        settings = settings.replace(bot=bot)
    from textwire.phone import set_default_region

    set_default_region(settings.default_region)
    return settings


def bot_option(func: F) -> F:
    return click.option(
        "--bot",
        "bot_spec",
        metavar="MODULE:ATTR",
        help="The bot (a Bot or a factory); default TEXTWIRE_BOT, else the help desk.",
    )(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="textwire")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text or as JSON objects.",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
)
def main(log_format: str, log_level: str) -> None:
    """textwire: SMS/MMS bots on Flask and Twilio."""
    configure_logging("json" if log_format == "json" else "text", log_level.upper())


# -- run ---------------------------------------------------------------------


def _transport(settings: Settings, *, dry_run: bool) -> Any:
    if dry_run:
        from textwire.transports.dryrun import DryRunTransport

        return DryRunTransport()
    if not settings.has_twilio_credentials:
        raise click.UsageError(
            "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set. Put them in the "
            "environment or a .env file, or try the bot offline with --dry-run."
        )
    from textwire.transports.twilio import TwilioTransport

    try:
        return TwilioTransport.from_settings(settings)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _stack(settings: Settings, transport: Any) -> Any:
    """What `run` and `dev` serve: the runtime (with its worker when there is a
    transport) and the app."""
    from textwire.server import build_stack

    try:
        return build_stack(settings, transport, worker=transport is not None)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except StorageError as exc:
        _fail(str(exc))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@bot_option
@click.option("--no-worker", is_flag=True, help="Serve webhooks only; send elsewhere.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="No Twilio: replies are recorded and logged, not sent; signatures "
    "are checked only when TWILIO_AUTH_TOKEN is set.",
)
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64))
def run(
    host: str,
    port: int,
    bot_spec: str | None,
    no_worker: bool,
    dry_run: bool,
    threads: int,
) -> None:
    """Serve the bot: Twilio webhooks, status callbacks, health, and the worker."""
    settings = _settings(bot_spec)
    if dry_run and not settings.twilio_auth_token:
        settings = settings.replace(validate_signatures=False)
    transport = None if no_worker else _transport(settings, dry_run=dry_run)
    stack = _stack(settings, transport)
    sock = _listen(host, port)
    port = sock.getsockname()[1]
    bot, store, worker, app = stack.bot, stack.store, stack.worker, stack.app
    sender = worker.sender if worker else None

    import waitress

    from textwire.server import proxy_options

    base = settings.public_url or f"http://{host}:{port}"
    out.print(
        f"[bold]textwire[/] serving bot [cyan]{bot.name}[/] on http://{host}:{port}"
    )
    out.print(f"  inbound webhook  {base}/twilio/sms   (POST)")
    out.print(f"  status callback  {base}/twilio/status")
    out.print(f"  database         {store!r}")
    if not settings.public_url:
        out.print(
            "  public URL       from the request; X-Forwarded-Proto/-Host believed "
            + (
                f"from {settings.trusted_proxy}"
                if settings.trusted_proxy
                else "from nobody (TEXTWIRE_TRUSTED_PROXY=none)"
            )
        )
    if settings.console_enabled:
        out.print(f"  operator console {base}/console/")
    if worker is None:
        out.print("  worker           off (--no-worker): run `textwire worker`")
    elif dry_run:
        out.print("  worker           [yellow]dry run[/]: replies are logged, not sent")
    elif sender is not None:
        out.print(
            f"  worker           {worker.inbox.concurrency} handlers, "
            f"sending at up to {sender.concurrency} at once"
        )
    if not settings.validate_signatures:
        out.print(
            "  [yellow]signatures not checked[/] (no TWILIO_AUTH_TOKEN). "
            "Text the bot:\n"
            f"    curl -d Body=help -d From=+14155550199 -d To=+14155550100 "
            f"-d AccountSid=AC{'0' * 32} -d MessageSid=SM$(openssl rand -hex 16) "
            f"http://{host}:{port}/twilio/sms",
            soft_wrap=True,
        )
    stack.start_worker()
    try:
        waitress.serve(
            app,
            sockets=[sock],
            threads=threads,
            ident="textwire",
            **proxy_options(settings.trusted_proxy),
        )
    finally:
        stack.close()


# -- sandbox -----------------------------------------------------------------


def _rate(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise click.BadParameter(f"{value} is not a share between 0 and 1")
    return value


def _seconds(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value) or not 0.0 <= value <= 60.0:
        raise click.BadParameter(f"{value} is not a number of seconds from 0 to 60")
    return value


def _listen(host: str, port: int) -> socket.socket:
    """A bound socket for ``host:port``, or a clear error and exit code 1."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise click.BadParameter(
            f"{host!r} is not an address to listen on ({exc.strerror})",
            param_hint="--host",
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)  # connections wait in the backlog until serving starts
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            _fail(
                f"port {port} on {host} is already in use: stop what runs there "
                "or pick another with --port"
            )
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    return sock


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="0 picks a free port.",
)
@bot_option
@click.option(
    "--emulator-only",
    is_flag=True,
    help="Just the emulated Twilio API and the phone page: no bot, no worker "
    "(for testing your own Twilio code).",
)
@click.option(
    "--latency",
    default=0.0,
    metavar="S",
    type=float,
    callback=_seconds,
    help="Seconds added to every emulated API request.",
)
@click.option(
    "--error-rate-500",
    default=0.0,
    metavar="P",
    type=float,
    callback=_rate,
    help="Share (0-1) of message creates answered 500.",
)
@click.option(
    "--error-rate-429",
    default=0.0,
    metavar="P",
    type=float,
    callback=_rate,
    help="Share (0-1) of message creates answered 429 with Retry-After.",
)
@click.option(
    "--stall-rate",
    default=0.0,
    metavar="P",
    type=float,
    callback=_rate,
    help="Share (0-1) of message creates accepted but answered only 30 s later.",
)
@click.option("--threads", default=32, show_default=True, type=click.IntRange(4, 256))
def sandbox(
    host: str,
    port: int,
    bot_spec: str | None,
    emulator_only: bool,
    latency: float,
    error_rate_500: float,
    error_rate_429: float,
    stall_rate: float,
    threads: int,
) -> None:
    """Offline: an emulator of Twilio, a phone page and the bot, on one port."""
    settings = _settings(bot_spec)
    from textwire.sandbox.api import Faults
    from textwire.sandbox.app import create_sandbox

    faults = None
    if latency or error_rate_500 or error_rate_429 or stall_rate:
        try:
            faults = Faults(
                latency=latency,
                error_500_rate=error_rate_500,
                error_429_rate=error_rate_429,
                stall_rate=stall_rate,
            )
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    sock = _listen(host, port)
    port = sock.getsockname()[1]
    try:
        box = create_sandbox(
            settings,
            host=host,
            port=port,
            emulator_only=emulator_only,
            faults=faults,
        )
    except ConfigError as exc:
        sock.close()
        raise click.UsageError(str(exc)) from None
    except StorageError as exc:
        sock.close()
        _fail(str(exc))
        return

    url = box.url
    generated = settings.twilio_auth_token is None
    token = box.settings.twilio_auth_token or ""
    what = "emulator only" if emulator_only else "emulator + bot"
    out.print(f"[bold]textwire sandbox[/] ({what}): open [bold cyan]{url}[/]")
    out.print(f"  account SID   {box.state.account_sid}")
    out.print(
        f"  auth token    {token}"
        if generated
        else "  auth token    from TWILIO_AUTH_TOKEN (shown on the page)"
    )
    out.print(f"  number        {box.number}")
    if box.store is not None and box.page is not None:
        out.print(f"  bot           {box.page.bot_name}")
        out.print(f"  database      {box.store!r}")
        out.print(f"  console       {box.console_url}", soft_wrap=True)
        out.print(
            f"    password    {box.console_password}"
            if box.console_password and not settings.console_password
            else "    password    from TEXTWIRE_CONSOLE_PASSWORD(_HASH)"
        )
    else:
        out.print(
            "  the number has no SmsUrl yet: set it through the API to get the "
            "phones' texts"
        )
    if faults is not None:
        out.print(f"  [yellow]faults[/]        {faults}")
    out.print("  point your own twilio code at it:")
    out.print(f"    TEXTWIRE_TWILIO_API_URL={url}", soft_wrap=True)
    out.print(f'    client.api.base_url = "{url}"', soft_wrap=True)

    from textwire.sandbox.app import SandboxServer

    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server = SandboxServer(box, sock, threads=threads)
    server.start()
    try:
        while server.running and not stop.wait(1.0):
            pass
    finally:
        console.print("stopping the sandbox…")
        server.stop()


# -- dev ---------------------------------------------------------------------


def _fail_setup(exc: DevSetupError) -> None:
    console.print(f"[bold red]error:[/] {exc.message}", soft_wrap=True)
    if exc.hint:
        console.print(f"  [dim]hint:[/] {exc.hint}", soft_wrap=True)
    sys.exit(1)


def _stale_decider(choice: bool | None) -> Callable[[Any], bool]:
    """Restore (True) or forget (False) what a run that died left: the flag's
    answer, else the person's at a terminal, else an error naming the flags."""

    def decide(saved: Any) -> bool:
        if choice is not None:
            return choice
        from textwire.phone import mask

        if sys.stdin is not None and sys.stdin.isatty():
            # Ctrl-C at the prompt aborts (dev's own handler only sets a flag).
            handler = signal.signal(signal.SIGINT, signal.default_int_handler)
            try:
                return click.confirm(
                    f"Put {mask(saved.phone_number)}'s previous webhooks back first?",
                    default=True,
                )
            finally:
                signal.signal(signal.SIGINT, handler)
        raise DevSetupError(
            f"the last textwire dev did not restore {mask(saved.phone_number)}",
            hint="pass --restore-previous (put its saved webhooks back first) or "
            "--keep-previous (forget them)",
        )

    return decide


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="0 picks a free port.",
)
@bot_option
@click.option(
    "--public-url",
    metavar="URL",
    help="The https URL of a tunnel or proxy of your own to this port: no ngrok.",
)
@click.option(
    "--domain",
    metavar="DOMAIN",
    help="A domain reserved in your ngrok account, for a URL that stays the same "
    "(default TEXTWIRE_NGROK_DOMAIN).",
)
@click.option(
    "--restore-previous/--keep-previous",
    "restore_previous",
    default=None,
    help="When the last run died without restoring the number: put its saved "
    "webhooks back first, or forget them (default: ask).",
)
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=str(DEFAULT_STATE_PATH),
    show_default=True,
    help="Where the number's previous webhooks are kept while dev runs.",
)
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64))
def dev(
    host: str,
    port: int,
    bot_spec: str | None,
    public_url: str | None,
    domain: str | None,
    restore_previous: bool | None,
    state_file: Path,
    threads: int,
) -> None:
    """Go live: `run` behind an ngrok tunnel, with your Twilio number pointed at it.

    Restores the number's previous webhooks on exit (Ctrl-C, SIGTERM).
    """
    settings = _settings(bot_spec)
    if public_url and domain:
        raise click.UsageError("--domain names an ngrok domain: not with --public-url")
    try:
        if public_url:
            public_url = settings.replace(public_url=public_url).public_url
        if domain:
            settings = settings.replace(ngrok_domain=domain)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if not settings.has_twilio_credentials:
        raise click.UsageError(
            "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set: put them in the "
            "environment or a .env file (to try the bot without Twilio: "
            "textwire sandbox)"
        )
    if not settings.twilio_phone_number:
        raise click.UsageError(
            "TWILIO_PHONE_NUMBER is not set: textwire dev points that number "
            "at this machine"
        )
    from textwire.dev import DevOptions, run_dev

    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        if not stop.is_set():
            console.print("stopping: restoring the number…")
        stop.set()

    sock = _listen(host, port)
    port = sock.getsockname()[1]
    previous = {
        sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        run_dev(
            settings,
            DevOptions(
                host=host,
                port=port,
                public_url=public_url,
                domain=settings.ngrok_domain,
                threads=threads,
                state_path=state_file,
            ),
            sock=sock,
            stop=stop,
            build_stack=lambda live: _stack(live, _transport(live, dry_run=False)),
            decide_stale=_stale_decider(restore_previous),
            console=out,
        )
    except DevSetupError as exc:
        _fail_setup(exc)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- doctor ------------------------------------------------------------------


@main.command()
def doctor() -> None:
    """Check credentials, number, webhook URL, reachability, database and clock.

    Exits 0 only when every check passes.
    """
    settings = _settings()
    from textwire.doctor import all_passed, render, resolve_public_url, run_checks

    public_url, source = resolve_public_url(settings)
    if public_url and source != "TEXTWIRE_PUBLIC_URL":
        out.print(f"public URL {public_url} (from {source})")
    with console.status("checking…"):
        checks = run_checks(settings, public_url=public_url)
    render(checks, out)
    if not all_passed(checks):
        sys.exit(1)


# -- worker ------------------------------------------------------------------


@main.command()
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve this worker's Prometheus metrics at http://HOST:PORT/metrics.",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address for --metrics-port (0.0.0.0: every interface).",
)
def worker(metrics_port: int | None, metrics_host: str) -> None:
    """Run the worker alone: handle the inbox (the bot) and send the outbox.

    Run as many as you like, on any number of machines, against one database.
    """
    settings = _settings()
    transport = _transport(settings, dry_run=False)
    from textwire.runtime import Runtime

    try:
        runtime = Runtime.from_settings(settings, transport=transport)
    except ConfigError as exc:
        transport.close()
        raise click.UsageError(str(exc)) from None
    except StorageError as exc:
        transport.close()
        _fail(str(exc))
        return
    assert runtime.worker is not None

    if metrics_port is not None:
        from textwire.metrics import serve

        try:
            server = serve(metrics_port, host=metrics_host, store=runtime.store)
        except OSError as exc:
            runtime.stop()
            _fail(f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc}")
        host, port = server.server_address[:2]
        out.print(f"metrics at http://{host}:{port}/metrics")

    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        console.print("stopping after the messages in hand…")
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    out.print(
        f"[bold]textwire worker[/] {runtime.worker.worker_id} on {runtime.store!r}: "
        f"bot {runtime.bot.name}"
    )
    try:
        runtime.worker.run_forever(stop)
    finally:
        runtime.stop()


# -- send --------------------------------------------------------------------


@main.command()
@click.argument("to")
@click.argument("body", default="")
@click.option(
    "--media", "media", multiple=True, metavar="URL", help="An image URL (up to 10)."
)
@click.option(
    "--queue-only",
    is_flag=True,
    help="Queue and return; a running `textwire run` or worker sends it.",
)
@click.option(
    "--at",
    "when",
    metavar="WHEN",
    help="Schedule it: ISO 8601 with an offset, +2h / +30m, or a local time "
    "such as 'tomorrow 09:00' (the recipient's). A running worker sends it.",
)
@click.option("--timeout", default=120.0, show_default=True, type=click.FloatRange(1))
@click.option(
    "--probe",
    is_flag=True,
    help="HEAD-check each media URL first (reachable, a media type, within limits).",
)
def send(
    to: str,
    body: str,
    media: tuple[str, ...],
    queue_only: bool,
    when: str | None,
    timeout: float,
    probe: bool,
) -> None:
    """Send one message (text and images as one MMS) through the outbox."""
    settings = _settings()
    from textwire.messages import Reply
    from textwire.phone import mask, normalize

    try:
        recipient = normalize(to, settings.default_region)
    except InvalidPhoneNumber as exc:
        raise click.BadParameter(exc.reason, param_hint=f"TO ({to!r})") from None
    try:
        reply = Reply(body, media)
    except InvalidMessage as exc:
        raise click.UsageError(str(exc)) from None
    send_at = _send_time(when, recipient)
    # A scheduled message is sent by a worker when its time comes.
    queue_only = queue_only or send_at is not None
    transport = None if queue_only else _transport(settings, dry_run=False)
    info = reply.segments
    out.print(
        f"to {mask(recipient)}: {info}" + (f", {len(media)} media" if media else "")
    )
    if info.unicode_chars:
        out.print(
            "  [yellow]UCS-2 because of[/] "
            + " ".join(repr(c) for c in info.unicode_chars)
        )

    if probe or settings.probe_media:
        from textwire.media import probe_media

        problems = probe_media(
            reply.media,
            allow_private=settings.allow_private_media,
            own_url=settings.public_url,
        )
        if problems:
            raise click.UsageError("media check failed:\n  " + "\n  ".join(problems))

    from textwire import Bot
    from textwire.runtime import Runtime
    from textwire.service import queue_message

    try:
        # No bot runs here: this process only sends its own message.
        runtime = Runtime.from_settings(
            settings, bot=Bot("send"), transport=transport, worker=False
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except StorageError as exc:
        _fail(str(exc))
        return
    store = runtime.store
    try:
        outbox_ids = queue_message(
            store,
            to=recipient,
            body=reply.body,
            media=reply.media,
            settings=settings,
            at=send_at,
        )
    except (ConfigError, InvalidMessage) as exc:
        runtime.stop()
        raise click.UsageError(str(exc)) from None
    except RecipientOptedOut as exc:
        runtime.stop()
        _fail(str(exc))
        return
    names = ", ".join(f"#{i}" for i in outbox_ids)
    if len(outbox_ids) > 1:
        out.print(
            f"{mask(recipient)} cannot receive MMS: the media go as links, "
            f"in {len(outbox_ids)} messages"
        )
    if transport is None:
        runtime.stop()
        if send_at is not None:
            from textwire.broadcast.cli import describe_time

            out.print(
                f"scheduled as outbox {names} for {describe_time(send_at, recipient)}"
            )
            if settings.quiet_hours:
                out.print(f"  held during quiet hours {settings.quiet_hours}")
            return
        out.print(f"queued as outbox {names}")
        return

    from textwire.worker import SendWorker

    # This message's rows only: whatever else is due is a worker's to send.
    send_worker = SendWorker(store, transport, settings=settings)
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any] | None] = []
    try:
        with console.status(f"sending outbox {names}…"):
            while time.monotonic() < deadline:
                send_worker.run_once(only=outbox_ids)
                rows = [store.outbox.row(i) for i in outbox_ids]
                if all(row and row["status"] in ("sent", "failed") for row in rows):
                    break
                time.sleep(0.25)
    finally:
        send_worker.stop()
        runtime.stop()
    failed = False
    for outbox_id, row in zip(outbox_ids, rows, strict=True):
        if row is None or row["status"] not in ("sent", "failed"):
            last = row["last_error"] if row else None
            console.print(
                f"[bold red]error:[/] outbox #{outbox_id} not sent within "
                f"{timeout:.0f} s (last error: {last}); it stays queued"
            )
            failed = True
        elif row["status"] == "failed":
            console.print(
                f"[bold red]error:[/] outbox #{outbox_id} failed: {row['last_error']}"
            )
            failed = True
        else:
            out.print(f"sent: [bold]{row['sid']}[/] ({row['message_status']})")
    if failed:
        sys.exit(1)


# -- console -----------------------------------------------------------------


@main.group()
def console_() -> None:
    """The operator console at /console."""


@console_.command("hash-password")
@click.password_option(
    "--password", prompt="Console password", help="Read from a prompt when omitted."
)
def hash_password(password: str) -> None:
    """Print a hash for TEXTWIRE_CONSOLE_PASSWORD_HASH (the password is not kept)."""
    from werkzeug.security import generate_password_hash

    if len(password) < 8:
        raise click.BadParameter("use at least 8 characters", param_hint="password")
    out.print(generate_password_hash(password), soft_wrap=True, highlight=False)


main.add_command(console_, name="console")


def _send_time(when: str | None, recipient: str) -> Any:
    """``--at`` as a UTC datetime (``None`` when not given); a usage error
    (exit 2) when it is unreadable, past, or over a year ahead."""
    if when is None:
        return None
    from textwire.errors import InvalidSendTime
    from textwire.quiet import zones_for_number
    from textwire.when import parse_when

    try:
        return parse_when(when, zones=zones_for_number(recipient))
    except InvalidSendTime as exc:
        raise click.BadParameter(str(exc), param_hint="--at") from None


# -- db ----------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema."""


@db.command()
def upgrade() -> None:
    """Apply the migrations (PostgreSQL: run once per deploy)."""
    settings = _settings()
    from textwire.storage.sql import SqlStore

    try:
        store = SqlStore(settings.database_url)
        before = store.current_revision()
        store.upgrade()
        after = store.current_revision()
    except (StorageError, ConfigError) as exc:
        _fail(str(exc))
        return
    except Exception as exc:  # a driver error names the problem well enough
        _fail(f"migration failed: {exc.__class__.__name__}: {exc}")
        return
    if before == after:
        out.print(f"database already at revision {after}")
    else:
        out.print(f"database upgraded {before or 'empty'} → {after}")


def _add_bulk_commands() -> None:
    # The broadcast and scheduled groups live in a module of their own.
    from textwire.broadcast.cli import broadcast, scheduled

    main.add_command(broadcast)
    main.add_command(scheduled)


_add_bulk_commands()

"""Soak under faults: the production layout, thousands of texts, one worker
killed, and nothing lost or sent twice.

    make soak                         # 20,000 messages
    SOAK_MESSAGES=2000 make soak      # shorter

What runs, each in its own process, on a fresh PostgreSQL schema:

* the Twilio emulator (``textwire.sandbox``'s REST API and carrier, served by
  waitress: ``python -m bench.soak emulator``), answering 5% of message
  creates with 500, 5% with 429 and accepting 1% but answering them only after
  the client's timeout (the ambiguous case); its carrier posts signed ``sent``
  and ``delivered`` status callbacks back;
* ``gunicorn -w 2 -c python:textwire.web.gunicorn_conf 'textwire.web:create_app()'``
  with ``PROMETHEUS_MULTIPROC_DIR`` and a bot that answers every text with
  exactly one reply (``bench.soak:create_bot``);
* two ``textwire worker`` processes (sharing the metrics directory).

This process posts the inbound webhooks, signed for the server's public URL,
from several threads: every message once, 10% of them twice, half of those as
two requests at the same moment. Halfway through it SIGKILLs one worker and
starts it again. Then it waits (bounded) until the outbox is empty and the
carrier has posted every status callback, scrapes ``/metrics`` and compares.

Pass: no webhook failed, no reply created twice at the emulator for one
outbox row, none missing, and ``/metrics`` agrees with what the soak and the
emulator counted. Writes ``bench/results/soak.md`` and ``soak.json``; exits 1
when anything failed. ``tests/test_soak.py`` runs a short version.

Settings (environment): ``SOAK_MESSAGES`` (20000), ``SOAK_CLIENTS`` (8
concurrent webhook senders), ``SOAK_SEED``, ``SOAK_DATABASE_URL`` (the
PostgreSQL server; a schema of its own is made and dropped),
``SOAK_DRAIN_TIMEOUT`` (seconds, 1800), ``SOAK_KEEP_SCHEMA=1``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

ACCOUNT_SID = "AC" + "50a4" * 8
AUTH_TOKEN = "soak-auth-token-0123456789abcdef"
METRICS_TOKEN = "soak-metrics-token"
BOT_NUMBER = "+14155550100"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# The senders' numbers: never the bot's own (+1 415), which Twilio refuses
# to text (21266: To equal to From).
AREA_CODES = (628, 650, 510, 408, 707, 925, 831, 209, 559, 530)


# -- the bot under test ------------------------------------------------------------


def create_bot() -> Any:
    """One reply per text, naming it: ``soak 17`` → ``re: soak 17``."""
    from textwire import Bot, Context, Inbound

    bot = Bot(name="soak")

    @bot.fallback()
    def echo(msg: Inbound, ctx: Context) -> str:
        return f"re: {msg.text}"

    return bot


# -- the emulator process ------------------------------------------------------------


def outbox_of(status_callback: str | None) -> int | None:
    if not status_callback:
        return None
    values = parse_qs(urlsplit(status_callback).query).get("outbox")
    return int(values[0]) if values else None


def create_emulator(
    base_url: str,
    *,
    error_500: float,
    error_429: float,
    stall: float,
    stall_seconds: float,
    retry_after: int,
    seed: int,
    callback_threads: int = 8,
) -> Any:
    """The sandbox's Twilio API and carrier, counting what they do, plus
    ``GET /soak/stats``."""
    from flask import Flask, Response, jsonify

    from textwire.sandbox.api import Faults, create_api_blueprint
    from textwire.sandbox.carrier import Carrier
    from textwire.sandbox.state import EmMessage, EmulatorState

    class CountingFaults(Faults):
        """Faults that count their draws: one per create call."""

        def __post_init__(self) -> None:
            super().__post_init__()
            self.drawn: collections.Counter[str] = collections.Counter()
            self.count_lock = threading.Lock()

        def draw(self) -> str | None:
            fault = super().draw()
            with self.count_lock:
                self.drawn[fault or "none"] += 1
            return fault

    class SoakCarrier(Carrier):
        """Twilio's callbacks (sent, delivered) posted from a pool of threads,
        counted by status and answer."""

        def __init__(self, state: EmulatorState, **kwargs: Any) -> None:
            super().__init__(state, **kwargs)
            self.pool = ThreadPoolExecutor(callback_threads, "soak-callback")
            self.tally: collections.Counter[tuple[str, bool]] = collections.Counter()
            self.pending = 0
            self.tally_lock = threading.Lock()

        def _plan(self, message: EmMessage) -> list[tuple[str, int | None]]:
            return [("sent", None), ("delivered", None)]

        def _post_status(
            self, message: EmMessage, status: str, code: int | None
        ) -> None:
            with self.tally_lock:
                self.pending += 1
            self.pool.submit(self._post_in_pool, message, status, code)

        def _post_in_pool(
            self, message: EmMessage, status: str, code: int | None
        ) -> None:
            try:
                super()._post_status(message, status, code)
            finally:
                with self.tally_lock:
                    self.pending -= 1

        def _send_signed(self, url: str, method: str, params: dict[str, str]) -> Any:
            answer = super()._send_signed(url, method, params)
            status = params.get("MessageStatus")
            if status:
                with self.tally_lock:
                    self.tally[(status, bool(answer.ok))] += 1
            return answer

    faults = CountingFaults(
        error_500_rate=error_500,
        error_429_rate=error_429,
        stall_rate=stall,
        stall_seconds=stall_seconds,
        retry_after=retry_after,
        seed=seed,
    )
    state = EmulatorState(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
    state.add_number(BOT_NUMBER, "soak")
    carrier = SoakCarrier(state, base_url=base_url, step_delay=0.02, http_timeout=60)
    app = Flask("bench.soak.emulator")
    app.register_blueprint(create_api_blueprint(state, carrier, faults))

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.get("/soak/stats")
    def stats() -> Response:
        messages = [
            [outbox_of(m.status_callback), m.to, m.body]
            for m in state.all_messages()
            if m.direction.startswith("outbound")
        ]
        with faults.count_lock:
            drawn = dict(faults.drawn)
        with carrier.tally_lock:
            callbacks: dict[str, dict[str, int]] = {}
            for (status, ok), n in carrier.tally.items():
                entry = callbacks.setdefault(status, {"ok": 0, "failed": 0})
                entry["ok" if ok else "failed"] += n
            pending = carrier.pending
        with carrier._lock:  # steps not yet taken (their callbacks not yet due)
            steps = len(carrier._steps)
        return jsonify(
            creates=sum(drawn.values()),
            faults=drawn,
            messages=messages,
            callbacks=callbacks,
            callbacks_pending=pending + steps,
        )

    return app, carrier


def serve_emulator(args: argparse.Namespace) -> None:
    import waitress

    base_url = f"http://127.0.0.1:{args.port}"
    app, carrier = create_emulator(
        base_url,
        error_500=args.error_500,
        error_429=args.error_429,
        stall=args.stall,
        stall_seconds=args.stall_seconds,
        retry_after=args.retry_after,
        seed=args.seed,
    )
    carrier.start()
    # Each stalled create holds a thread for stall_seconds: be generous.
    waitress.serve(app, host="127.0.0.1", port=args.port, threads=64, ident=None)


# -- configuration and plan ------------------------------------------------------------


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


@dataclasses.dataclass
class SoakConfig:
    """Sizes, faults and the knobs of the system under test."""

    messages: int = 20_000
    duplicate_share: float = 0.10
    concurrent_share: float = 0.5  # of the duplicates: two requests at once
    phones: int = 0  # 0: one phone per four messages
    clients: int = 8
    error_500: float = 0.05
    error_429: float = 0.05
    stall: float = 0.01
    # A 429 of the emulator comes at random, not from our pace: with
    # Retry-After: 1 each one would hold the sender back for every worker for
    # a second (1,000 s over 20,000 messages). Its handling has its own tests.
    retry_after: int = 0
    twilio_timeout: float = 2.0
    stall_seconds: float = 6.0
    kill_at: float = 0.5
    web_workers: int = 2
    send_workers: int = 2
    worker_concurrency: int = 8
    lease_seconds: float = 10.0
    max_send_attempts: int = 25
    rate_limit_mps: float = 500.0
    drain_timeout: float = 1800.0
    seed: int = 1
    log_level: str = "WARNING"
    # An empty database (tests pass a schema of their own); else a schema is
    # made in ``server_url`` and dropped at the end.
    database_url: str | None = None
    server_url: str = DEFAULT_PG
    keep_schema: bool = False

    @classmethod
    def from_env(cls) -> SoakConfig:
        return cls(
            messages=_env_int("SOAK_MESSAGES", cls.messages),
            clients=_env_int("SOAK_CLIENTS", cls.clients),
            seed=_env_int("SOAK_SEED", cls.seed),
            drain_timeout=_env_float("SOAK_DRAIN_TIMEOUT", cls.drain_timeout),
            server_url=os.environ.get("SOAK_DATABASE_URL", "") or DEFAULT_PG,
            keep_schema=os.environ.get("SOAK_KEEP_SCHEMA", "") == "1",
            log_level=os.environ.get("SOAK_LOG_LEVEL", "") or cls.log_level,
        )


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to post: ``jobs`` in order, each ``("one", i)`` or ``("pair", i)``
    (message ``i`` twice at the same moment)."""

    forms: list[dict[str, str]]
    jobs: list[tuple[str, int]]
    duplicated: int
    concurrent: int

    @property
    def deliveries(self) -> int:
        return sum(2 if kind == "pair" else 1 for kind, _ in self.jobs)


def phone_number(n: int) -> str:
    return f"+1{AREA_CODES[n // 10_000 % len(AREA_CODES)]}555{n % 10_000:04d}"


def make_plan(cfg: SoakConfig) -> Plan:
    rng = random.Random(cfg.seed)
    phones = cfg.phones or max(1, cfg.messages // 4)
    tag = uuid.uuid4().hex[:8]
    forms = []
    for i in range(cfg.messages):
        sid = f"SM{tag}{i:024x}"
        forms.append(
            {
                "MessageSid": sid,
                "SmsSid": sid,
                "SmsMessageSid": sid,
                "AccountSid": ACCOUNT_SID,
                "From": phone_number(i % phones),
                "To": BOT_NUMBER,
                "Body": f"soak {i}",
                "NumMedia": "0",
                "NumSegments": "1",
                "SmsStatus": "received",
                "ApiVersion": "2010-04-01",
            }
        )
    duplicated = rng.sample(
        range(cfg.messages), round(cfg.messages * cfg.duplicate_share)
    )
    cut = round(len(duplicated) * cfg.concurrent_share)
    pairs, again = set(duplicated[:cut]), duplicated[cut:]
    jobs: list[tuple[str, int]] = [
        ("pair" if i in pairs else "one", i) for i in range(cfg.messages)
    ]
    # The other duplicates come again a little later, as Twilio's retries do.
    for i in sorted(again, reverse=True):
        jobs.insert(min(len(jobs), i + 1 + rng.randint(0, 200)), ("one", i))
    return Plan(
        forms=forms, jobs=jobs, duplicated=len(duplicated), concurrent=len(pairs)
    )


# -- processes ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log(message: str) -> None:
    print(
        f"[soak {datetime.now().strftime('%H:%M:%S')}] {message}",
        file=sys.stderr,
        flush=True,
    )


class Processes:
    """The processes of one soak, each stopped by its own pid."""

    def __init__(self, work: Path, env: Mapping[str, str]) -> None:
        self.work = work
        self.env = dict(env)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.counts: collections.Counter[str] = collections.Counter()

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        self.counts[name] += 1
        path = self.work / f"{name}-{self.counts[name]}.log"
        with path.open("wb") as out:
            proc = subprocess.Popen(
                args, env=self.env, cwd=self.work, stdout=out, stderr=subprocess.STDOUT
            )
        self.procs[name] = proc
        return proc

    def log_of(self, name: str) -> Path:
        return self.work / f"{name}-{self.counts[name]}.log"

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = self.log_of(name).read_text()[-3000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def wait_ready(self, name: str, url: str) -> None:
        """Wait until ``url`` answers 200 (tests/waiting.py), or fail with the
        log of ``name``."""
        from tests.waiting import wait_for_server

        wait_for_server(url, proc=self.procs[name], log=self.log_of(name), what=name)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def wait_until(
    condition: Callable[[], bool],
    what: str,
    timeout: float,
    *,
    every: float = 0.1,
    check: Callable[[], None] | None = None,
) -> float:
    """Poll ``condition`` until it holds; return the seconds it took.

    Raises:
        TimeoutError: not within ``timeout`` seconds.
    """
    tick = threading.Event()
    started = time.monotonic()
    while not condition():
        if check is not None:
            check()
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        tick.wait(every)
    return time.monotonic() - started


@contextmanager
def soak_database(cfg: SoakConfig) -> Iterator[str]:
    """``cfg.database_url``, or a fresh schema in ``cfg.server_url``."""
    if cfg.database_url:
        yield cfg.database_url
        return
    import sqlalchemy

    schema = "soak_" + uuid.uuid4().hex[:10]
    admin = sqlalchemy.create_engine(cfg.server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in cfg.server_url else "?"
    try:
        yield f"{cfg.server_url}{sep}options={quote('-csearch_path=' + schema)}"
    finally:
        if not cfg.keep_schema:
            with admin.connect() as conn:
                conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# -- database readings ------------------------------------------------------------


def open_rows(store: Any) -> int:
    depth: int = store.outbox.depth()
    return depth


def rows_held_by(store: Any, pid: int) -> int:
    from sqlalchemy import func, select

    from textwire.storage.schema import OutboxItem

    with store.engine.connect() as conn:
        held: int = conn.execute(
            select(func.count()).where(
                OutboxItem.status == "sending",
                OutboxItem.claimed_by.like(f"%:{pid}:%"),
            )
        ).scalar_one()
    return held


def database_figures(store: Any) -> dict[str, Any]:
    from sqlalchemy import func, select

    from textwire.storage.schema import Message, OutboxItem

    with store.engine.connect() as conn:
        outbox = dict(
            conn.execute(
                select(OutboxItem.status, func.count()).group_by(OutboxItem.status)
            ).all()
        )
        inbound = conn.execute(
            select(func.count()).where(Message.direction == "inbound")
        ).scalar_one()
        retried = conn.execute(
            select(func.count()).where(OutboxItem.attempts > 1)
        ).scalar_one()
        statuses = dict(
            conn.execute(
                select(Message.status, func.count())
                .where(Message.direction != "inbound")
                .group_by(Message.status)
            ).all()
        )
    return {
        "outbox": {str(k): int(v) for k, v in outbox.items()},
        "reply_statuses": {str(k): int(v) for k, v in statuses.items()},
        "inbound": int(inbound),
        "rows_attempted_more_than_once": int(retried),
    }


# -- metrics ---------------------------------------------------------------------


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    with requests.get(
        url + "/metrics",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
        timeout=30,
    ) as response:
        response.raise_for_status()
        text = response.text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(
    samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float],
    name: str,
    **labels: str,
) -> int:
    """The sum of ``name``'s samples carrying ``labels`` (and any others)."""
    wanted = set(labels.items())
    return round(
        sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))
    )


# -- the run -----------------------------------------------------------------------


def settle(
    futures: list[Future[None]],
    answered: collections.Counter[str],
    lock: threading.Lock,
    check: Callable[[], None],
) -> None:
    """Wait for ``futures``, saying how far the load is every 10 s."""
    waiting = set(futures)
    while waiting:
        _done, waiting = wait(waiting, timeout=10)
        check()
        with lock:
            posted = sum(answered.values())
        log(f"{posted} webhooks answered")
    for future in futures:
        future.result()


def run_soak(cfg: SoakConfig, work: Path) -> dict[str, Any]:
    """Run one soak in ``work`` (logs, the metrics directory); return the report."""
    import requests
    from twilio.request_validator import RequestValidator

    from textwire.storage.sql import SqlStore

    started = time.monotonic()
    work.mkdir(parents=True, exist_ok=True)
    metrics_dir = work / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir()
    plan = make_plan(cfg)
    log(
        f"{cfg.messages} messages, {plan.duplicated} delivered twice "
        f"({plan.concurrent} at the same moment): {plan.deliveries} webhooks"
    )
    emulator_port, web_port = free_port(), free_port()
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    web_url = f"http://127.0.0.1:{web_port}"

    with soak_database(cfg) as database_url:
        store = SqlStore(database_url)
        store.upgrade()
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("TWILIO_", "TEXTWIRE_"))
            },
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_PHONE_NUMBER": BOT_NUMBER,
            "TEXTWIRE_DATABASE_URL": database_url,
            "TEXTWIRE_PUBLIC_URL": web_url,
            "TEXTWIRE_TWILIO_API_URL": emulator_url,
            "TEXTWIRE_TWILIO_TIMEOUT": str(cfg.twilio_timeout),
            "TEXTWIRE_BOT": "bench.soak:create_bot",
            "TEXTWIRE_METRICS_TOKEN": METRICS_TOKEN,
            "TEXTWIRE_RATE_LIMIT_MPS": str(cfg.rate_limit_mps),
            "TEXTWIRE_WORKER_CONCURRENCY": str(cfg.worker_concurrency),
            # One row per thread per batch: a batch never outlives its leases.
            "TEXTWIRE_WORKER_BATCH_SIZE": str(cfg.worker_concurrency),
            "TEXTWIRE_LEASE_SECONDS": str(cfg.lease_seconds),
            "TEXTWIRE_BACKOFF_BASE": "0.2",
            "TEXTWIRE_BACKOFF_CAP": "2",
            "TEXTWIRE_MAX_SEND_ATTEMPTS": str(cfg.max_send_attempts),
            "TEXTWIRE_WORKER_POLL_INTERVAL": "0.1",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR".lower(), None)
        procs = Processes(work, env)
        python = sys.executable
        try:
            procs.start(
                "emulator",
                [
                    python,
                    "-m",
                    "bench.soak",
                    "emulator",
                    "--port",
                    str(emulator_port),
                    "--error-500",
                    str(cfg.error_500),
                    "--error-429",
                    str(cfg.error_429),
                    "--stall",
                    str(cfg.stall),
                    "--stall-seconds",
                    str(cfg.stall_seconds),
                    "--retry-after",
                    str(cfg.retry_after),
                    "--seed",
                    str(cfg.seed),
                ],
            )
            procs.wait_ready("emulator", emulator_url + "/healthz")
            procs.start(
                "gunicorn",
                [
                    python,
                    "-m",
                    "gunicorn",
                    "-w",
                    str(cfg.web_workers),
                    "-b",
                    f"127.0.0.1:{web_port}",
                    "-c",
                    "python:textwire.web.gunicorn_conf",
                    "textwire.web:create_app()",
                ],
            )
            procs.wait_ready("gunicorn", web_url + "/healthz")
            worker_args = [
                python,
                "-m",
                "textwire",
                "--log-level",
                cfg.log_level,
                "worker",
            ]
            for n in range(cfg.send_workers):
                procs.start(f"worker{n}", worker_args)
            log(
                f"gunicorn -w {cfg.web_workers} at {web_url}, "
                f"{cfg.send_workers} workers, emulator at {emulator_url}"
            )

            # -- load, with the kill halfway
            validator = RequestValidator(AUTH_TOKEN)
            sms_url = web_url + "/twilio/sms"
            local = threading.local()
            answered: collections.Counter[str] = collections.Counter()
            tally_lock = threading.Lock()

            def post(form: dict[str, str], session: Any | None = None) -> None:
                session = session or getattr(local, "session", None)
                if session is None:
                    session = local.session = requests.Session()
                signature = validator.compute_signature(sms_url, form)
                try:
                    with session.post(
                        sms_url,
                        data=form,
                        headers={"X-Twilio-Signature": signature},
                        timeout=60,
                    ) as response:
                        outcome = str(response.status_code)
                except requests.RequestException as exc:
                    outcome = type(exc).__name__
                with tally_lock:
                    answered[outcome] += 1

            def run_job(job: tuple[str, int]) -> None:
                kind, i = job
                form = plan.forms[i]
                if kind == "one":
                    post(form)
                    return
                together = threading.Barrier(2)

                def twin() -> None:
                    with requests.Session() as own:
                        together.wait(10)
                        post(form, own)

                thread = threading.Thread(target=twin)
                thread.start()
                together.wait(10)
                post(form)
                thread.join()

            kill_after = int(len(plan.jobs) * cfg.kill_at)
            kill: dict[str, Any] = {}
            load_started = time.monotonic()
            with ThreadPoolExecutor(cfg.clients, "soak-client") as pool:
                first = [pool.submit(run_job, job) for job in plan.jobs[:kill_after]]
                settle(first, answered, tally_lock, procs.check)
                pending = [pool.submit(run_job, job) for job in plan.jobs[kill_after:]]
                # Kill a worker while it holds rows (bounded wait for that).
                victim = procs.procs["worker0"]
                with contextlib.suppress(TimeoutError):
                    wait_until(
                        lambda: rows_held_by(store, victim.pid) > 0,
                        "worker0 holding rows",
                        30,
                        every=0.005,
                    )
                victim.send_signal(signal.SIGKILL)
                victim.wait(timeout=10)
                kill = {
                    "pid": victim.pid,
                    "at_webhook": kill_after,
                    "at_seconds": round(time.monotonic() - started, 1),
                    "rows_orphaned": rows_held_by(store, victim.pid),
                }
                log(
                    f"SIGKILLed worker0 (pid {victim.pid}) holding "
                    f"{kill['rows_orphaned']} row(s); restarting it"
                )
                procs.start("worker0", worker_args)
                settle(pending, answered, tally_lock, procs.check)
            load_seconds = time.monotonic() - load_started
            log(
                f"{plan.deliveries} webhooks posted in {load_seconds:.1f} s; "
                "draining the outbox"
            )

            # -- drain (bounded)
            last = [0.0]

            def drained() -> bool:
                depth = open_rows(store)
                if time.monotonic() - last[0] > 10:
                    last[0] = time.monotonic()
                    log(f"outbox: {depth} open row(s)")
                return depth == 0

            drain_seconds = wait_until(
                drained,
                "the outbox to drain",
                cfg.drain_timeout,
                every=0.2,
                check=procs.check,
            )
            drained_at = time.monotonic() - started

            def emulator_stats() -> dict[str, Any]:
                with requests.get(emulator_url + "/soak/stats", timeout=60) as response:
                    response.raise_for_status()
                    stats: dict[str, Any] = response.json()
                    return stats

            wait_until(
                lambda: emulator_stats()["callbacks_pending"] == 0,
                "the status callbacks",
                300,
                every=0.5,
            )
            emulator = emulator_stats()
            samples = scrape(web_url)
            figures = database_figures(store)
        finally:
            procs.stop_all()
            store.dispose()

    wall = time.monotonic() - started
    return build_report(
        cfg,
        plan,
        emulator,
        samples,
        figures,
        answered,
        kill=kill,
        wall=wall,
        load_seconds=load_seconds,
        drain_seconds=drain_seconds,
        drained_at=drained_at,
    )


def build_report(
    cfg: SoakConfig,
    plan: Plan,
    emulator: dict[str, Any],
    samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float],
    database: dict[str, Any],
    answered: Mapping[str, int],
    *,
    kill: dict[str, Any],
    wall: float,
    load_seconds: float,
    drain_seconds: float,
    drained_at: float,
) -> dict[str, Any]:
    # What reached the emulator, per outbox row and per expected reply
    by_outbox = collections.Counter(
        outbox for outbox, _to, _body in emulator["messages"]
    )
    by_body = collections.Counter(body for _outbox, _to, body in emulator["messages"])
    to_of = {body: to for _outbox, to, body in emulator["messages"]}
    expected = {f"re: soak {i}": plan.forms[i]["From"] for i in range(cfg.messages)}
    # Extra messages for one outbox row (or, the same thing seen by its text,
    # for one expected reply).
    duplicates = max(
        sum(n - 1 for n in by_outbox.values() if n > 1),
        sum(n - 1 for n in by_body.values() if n > 1),
    )
    lost = sum(1 for body in expected if body not in by_body)
    misaddressed = sum(
        1 for body, to in expected.items() if body in to_of and to_of[body] != to
    )
    unexpected = sum(1 for body in by_body if body not in expected)
    faults = {k: int(emulator["faults"].get(k, 0)) for k in ("500", "429", "stall")}
    ok_200 = int(answered.get("200", 0))

    # /metrics against what the soak and the emulator counted
    m = samples
    sent = total(m, "textwire_send_attempts_total", outcome="sent")
    found = total(m, "textwire_reconciliations_total", result="found")
    slack = cfg.worker_concurrency  # API calls the killed worker had in flight at most
    checks: list[dict[str, Any]] = []

    def exact(figure: str, soak: int, metric: int, series: str) -> None:
        checks.append(
            {
                "figure": figure,
                "soak": soak,
                "metrics": metric,
                "series": series,
                "rule": "equal",
                "ok": soak == metric,
            }
        )

    def kill_window(figure: str, soak: int, metric: int, series: str) -> None:
        # The killed worker's calls in flight reached the emulator but were
        # never counted by it: /metrics may be short by at most that many.
        checks.append(
            {
                "figure": figure,
                "soak": soak,
                "metrics": metric,
                "series": series,
                "rule": f"0 ≤ soak − metrics ≤ {slack}",
                "ok": 0 <= soak - metric <= slack,
            }
        )

    exact(
        "webhooks answered 200",
        ok_200,
        total(m, "textwire_inbound_messages_total"),
        "textwire_inbound_messages_total",
    )
    exact(
        "unique inbound",
        cfg.messages,
        total(m, "textwire_inbound_messages_total", result="new"),
        'textwire_inbound_messages_total{result="new"}',
    )
    exact(
        "duplicate deliveries",
        plan.deliveries - cfg.messages,
        total(m, "textwire_inbound_messages_total", result="duplicate"),
        'textwire_inbound_messages_total{result="duplicate"}',
    )
    # Replies are counted by the worker that commits them, after the commit: a
    # worker killed between the two leaves a few uncounted.
    kill_window(
        "replies queued",
        cfg.messages,
        total(m, "textwire_replies_queued_total", via="outbox"),
        'textwire_replies_queued_total{via="outbox"}',
    )
    kill_window(
        "create requests at the emulator",
        int(emulator["creates"]),
        total(m, "textwire_send_duration_seconds_count"),
        "textwire_send_duration_seconds_count",
    )
    kill_window(
        "replies delivered (created at the emulator)",
        len(by_outbox),
        sent + found,
        'send_attempts{outcome="sent"} + reconciliations{result="found"}',
    )
    kill_window(
        "500s injected",
        faults["500"],
        total(m, "textwire_send_attempts_total", code="20500"),
        'textwire_send_attempts_total{code="20500"}',
    )
    kill_window(
        "429s injected",
        faults["429"],
        total(m, "textwire_send_attempts_total", code="20429"),
        'textwire_send_attempts_total{code="20429"}',
    )
    kill_window(
        "stalls injected (accepted, answered too late)",
        faults["stall"],
        total(m, "textwire_send_attempts_total", outcome="ambiguous"),
        'textwire_send_attempts_total{outcome="ambiguous"}',
    )
    in_flight = sum(
        c["soak"] - c["metrics"]
        for c in checks
        if c["figure"].startswith(("replies delivered", "500s", "429s", "stalls"))
    )
    checks.append(
        {
            "figure": "calls in flight at the kill (sum of the four above)",
            "soak": in_flight,
            "metrics": 0,
            "series": "—",
            "rule": f"≤ {slack}",
            "ok": 0 <= in_flight <= slack,
        }
    )
    for status in ("sent", "delivered"):
        # Twilio does not post a status callback again: one the app did not
        # answer is a status lost, so every one must be answered.
        posted = emulator["callbacks"].get(status, {"ok": 0, "failed": 0})
        metric = total(m, "textwire_status_callbacks_total", status=status)
        checks.append(
            {
                "figure": f"status callbacks {status}",
                "soak": posted["ok"],
                "metrics": metric,
                "series": f'textwire_status_callbacks_total{{status="{status}"}}',
                "rule": "equal, none unanswered"
                if not posted["failed"]
                else f"equal, but {posted['failed']} unanswered",
                "ok": posted["failed"] == 0 and posted["ok"] == metric,
            }
        )
    exact(
        "replies with status delivered (database)",
        len(by_outbox),
        database["reply_statuses"].get("delivered", 0),
        "— (messages.status)",
    )
    open_now = sum(
        n
        for s, n in database["outbox"].items()
        if s in ("queued", "sending", "unknown")
    )
    exact(
        "outbox depth at the end",
        open_now,
        total(m, "textwire_outbox_depth"),
        "textwire_outbox_depth",
    )
    exact(
        "send attempts failed or refused",
        0,
        total(m, "textwire_send_attempts_total", outcome="failed")
        + total(m, "textwire_send_attempts_total", outcome="refused"),
        'send_attempts{outcome=~"failed|refused"}',
    )

    webhook_errors = sum(n for outcome, n in answered.items() if outcome != "200")
    metrics_agree = all(c["ok"] for c in checks)
    ok = (
        duplicates == 0
        and lost == 0
        and misaddressed == 0
        and webhook_errors == 0
        and metrics_agree
        and unexpected == 0
    )
    return {
        "ok": ok,
        "command": "make soak"
        if cfg.messages == SoakConfig.messages
        else f"SOAK_MESSAGES={cfg.messages} make soak",
        "config": dataclasses.asdict(cfg) | {"database_url": None},
        "machine": machine(),
        "wall_seconds": round(wall, 1),
        "load_seconds": round(load_seconds, 1),
        "drain_seconds_after_load": round(drain_seconds, 1),
        "drained_at_seconds": round(drained_at, 1),
        "inbound": {
            "webhooks_posted": plan.deliveries,
            "answered_200": ok_200,
            "webhook_errors": webhook_errors,
            "answers": dict(answered),
            "unique": cfg.messages,
            "delivered_twice": plan.duplicated,
            "delivered_twice_concurrently": plan.concurrent,
            "recorded_in_database": database["inbound"],
            "webhooks_per_second": round(plan.deliveries / load_seconds, 1)
            if load_seconds
            else None,
        },
        "replies": {
            "expected": len(expected),
            "delivered": len(by_outbox),
            "duplicates": duplicates,
            "lost": lost,
            "misaddressed": misaddressed,
            "unexpected": unexpected,
            "outbox_rows": database["outbox"],
            "rows_attempted_more_than_once": database["rows_attempted_more_than_once"],
            "statuses_in_database": database["reply_statuses"],
        },
        "emulator": {
            "create_requests": int(emulator["creates"]),
            "faults_injected": faults,
            "status_callbacks": emulator["callbacks"],
        },
        "kill": kill,
        "metrics": {
            "send_attempts": {
                f"{dict(ls)['outcome']}/{dict(ls)['code']}": int(v)
                for (n, ls), v in sorted(m.items(), key=lambda kv: sorted(kv[0][1]))
                if n == "textwire_send_attempts_total" and v
            },
            "reconciliations": {
                r: total(m, "textwire_reconciliations_total", result=r)
                for r in ("found", "not_found", "error")
            },
            "send_duration_seconds": {
                "buckets": {
                    dict(ls)["le"]: int(v)
                    for (n, ls), v in m.items()
                    if n == "textwire_send_duration_seconds_bucket"
                },
                "count": total(m, "textwire_send_duration_seconds_count"),
                "sum": round(
                    m.get(("textwire_send_duration_seconds_sum", frozenset()), 0.0), 1
                ),
            },
        },
        "checks": checks,
        "metrics_agree": metrics_agree,
    }


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return info


# -- output ------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    cfg, inbound, replies = report["config"], report["inbound"], report["replies"]
    emu, kill = report["emulator"], report["kill"]
    faults = emu["faults_injected"]
    n = "{:,}".format
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    verdict = "PASS" if report["ok"] else "FAIL"
    lines = [
        "# Soak under faults",
        "",
        f"**{verdict}**: `{report['command']}`, {n(cfg['messages'])} messages, "
        f"wall time {report['wall_seconds']:.0f} s ({when}).",
        "",
        f"gunicorn -w {cfg['web_workers']} and {cfg['send_workers']} "
        f"`textwire worker` (concurrency {cfg['worker_concurrency']}, lease "
        f"{cfg['lease_seconds']:g} s, Twilio timeout {cfg['twilio_timeout']:g} s, "
        f"rate limit {cfg['rate_limit_mps']:g} msg/s) on PostgreSQL (a fresh "
        "schema); the emulator in a process of its own injecting "
        f"{cfg['error_500']:.0%} 500s, {cfg['error_429']:.0%} 429s (Retry-After: "
        f"{cfg['retry_after']}) and {cfg['stall']:.0%} accept-then-stall "
        f"({cfg['stall_seconds']:g} s).",
        "",
        "| figure | value |",
        "|---|---:|",
    ]
    killed = (
        f"pid {kill.get('pid')} after webhook {n(kill.get('at_webhook', 0))} "
        f"({kill.get('at_seconds')} s), holding {kill.get('rows_orphaned')} "
        "row(s); restarted"
    )
    rows = [
        ("webhooks posted", n(inbound["webhooks_posted"])),
        ("inbound received (answered 200)", n(inbound["answered_200"])),
        ("webhook errors", n(inbound["webhook_errors"])),
        (
            "unique inbound",
            f"{n(inbound['unique'])} (recorded: {n(inbound['recorded_in_database'])})",
        ),
        (
            "delivered twice",
            f"{n(inbound['delivered_twice'])} "
            f"({n(inbound['delivered_twice_concurrently'])} as two requests at once)",
        ),
        ("replies expected", n(replies["expected"])),
        ("replies delivered (at the emulator)", n(replies["delivered"])),
        ("**duplicates**", f"**{n(replies['duplicates'])}**"),
        ("**lost**", f"**{n(replies['lost'])}**"),
        (
            "misaddressed / unexpected",
            f"{replies['misaddressed']} / {replies['unexpected']}",
        ),
        ("create requests at the emulator", n(emu["create_requests"])),
        (
            "500s / 429s / stalls injected",
            f"{n(faults['500'])} / {n(faults['429'])} / {n(faults['stall'])}",
        ),
        (
            "rows that took more than one attempt",
            n(replies["rows_attempted_more_than_once"]),
        ),
        ("worker SIGKILLed", killed),
        ("webhooks/s during the load", str(inbound["webhooks_per_second"])),
        (
            "load / drain after it / wall",
            f"{report['load_seconds']:.0f} s / "
            f"{report['drain_seconds_after_load']:.0f} s / "
            f"{report['wall_seconds']:.0f} s",
        ),
    ]
    lines += [f"| {figure} | {value} |" for figure, value in rows]
    lines += [
        "",
        "## Cross-check against /metrics",
        "",
        "| figure | soak | /metrics | series | rule | |",
        "|---|---:|---:|---|---|---|",
    ]
    for c in report["checks"]:
        verdict = "ok" if c["ok"] else "**FAIL**"
        lines.append(
            f"| {c['figure']} | {n(c['soak'])} | {n(c['metrics'])} "
            f"| `{c['series']}` | {c['rule']} | {verdict} |"
        )
    attempts = report["metrics"]["send_attempts"]
    recon = report["metrics"]["reconciliations"]
    box = report["machine"]
    lines += [
        "",
        "A worker killed with SIGKILL can have had API calls in flight that the "
        "emulator answered but the worker never counted; their rows are "
        "reconciled by the other workers (found at the emulator, not sent "
        "again). Those are the only figures allowed to differ, by at most the "
        "killed worker's concurrency.",
        "",
        "Send attempts by outcome/code: "
        + ", ".join(f"{k} {n(v)}" for k, v in attempts.items())
        + "; reconciliations: "
        + ", ".join(f"{k} {n(v)}" for k, v in recon.items())
        + ".",
        "",
        f"Machine: {box.get('cpus')} CPUs ({box.get('cpu', '?')}), "
        f"{box.get('memory_gb', '?')} GB, Python {box['python']}; everything "
        "(PostgreSQL, gunicorn, workers, emulator, load) on it.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command")
    emu = sub.add_parser(
        "emulator", help="serve the counting emulator (used by the soak)"
    )
    emu.add_argument("--port", type=int, required=True)
    emu.add_argument("--error-500", type=float, default=0.05)
    emu.add_argument("--error-429", type=float, default=0.05)
    emu.add_argument("--stall", type=float, default=0.01)
    emu.add_argument("--stall-seconds", type=float, default=6.0)
    emu.add_argument("--retry-after", type=int, default=0)
    emu.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "emulator":
        serve_emulator(args)
        return 0

    cfg = SoakConfig.from_env()
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = run_soak(cfg, RESULTS / "soak-work")
    (RESULTS / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "soak.md").write_text(markdown(report))
    print(markdown(report))
    print(f"written: {RESULTS / 'soak.md'}, {RESULTS / 'soak.json'}", file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""A slow bot: every handler takes 1 s (a language model, an HTTP API).

``BENCH_SLOW_WEBHOOKS`` (64) webhooks are posted at once, each from its own
contact, each a new signed message, from as many threads released together.
Measured: how long each webhook takes to be answered (Twilio gives up after
15 s), and when each reply's ``messages.create`` reaches the emulator,
counted from the first webhook; every contact must get exactly one reply.

* ``textwire run`` on SQLite (the default layout: waitress and the worker in
  one process), ``TEXTWIRE_RATE_LIMIT_MPS=100`` so that the long code's
  pacing is not what is measured;
* the same on PostgreSQL with the web side alone (``textwire run
  --no-worker``) and two ``textwire worker`` processes;
* side by side, the quickstart app (``bench/baseline_app.py``'s route with
  the same 1 s in the handler, answering in TwiML) under ``waitress-serve
  --threads 8``, as ``textwire run`` serves;
* and the same app with no handler work at all, for the floor: how fast
  this server answers a burst of 64 from this load generator on this
  machine, whatever the app does.

Each textwire layout (and the floor) takes three bursts, one after another's
replies; the burst with the median p99 is reported, all three beside it.

The bot (``bench.slowbot:bot``) sleeps in its handler: that second is the
work being simulated, not a wait for a result.
"""

from __future__ import annotations

import http.client
import threading
import time
from typing import Any

from bench.common import (
    VENV_BIN,
    WORK,
    Config,
    Procs,
    Quiet,
    env_int,
    free_port,
    fresh_sqlite,
    migrate,
    percentile,
    reset_pg_database,
    textwire_env,
    wait_http,
)
from bench.outbound import Emulator, wait_log
from bench.webhooks import Signer
from textwire import Bot, Context, Inbound

HANDLER_SECONDS = 1.0

bot = Bot(name="slowbot")


@bot.message()
def think(msg: Inbound, ctx: Context) -> str:
    time.sleep(HANDLER_SECONDS)  # the simulated model call
    return f"Thought about {msg.text!r} for a second."


def post_all(port: int, signer: Signer, n: int) -> tuple[float, list[dict[str, Any]]]:
    """Post ``n`` webhooks at once (one thread each); when the first was sent,
    and each one's phone, status and answer time."""
    jobs = [signer.next(body=f"question {i}") for i in range(n)]
    barrier = threading.Barrier(n)
    results: list[dict[str, Any]] = [{} for _ in range(n)]

    def one(i: int) -> None:
        signature, body, phone = jobs[i]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        }
        barrier.wait()
        started = time.time()
        try:
            conn.request("POST", "/twilio/sms", body, headers)
            answer = conn.getresponse()
            answer.read()
            status = answer.status
        except (OSError, http.client.HTTPException) as exc:
            status = f"{type(exc).__name__}"
        results[i] = {
            "phone": phone,
            "started": started,
            "status": status,
            "seconds": time.time() - started,
        }
        conn.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return min(r["started"] for r in results), results


def measure(
    port: int, emulator: Emulator | None, n: int, timeout: float = 60.0
) -> dict[str, Any]:
    signer = Signer(f"http://127.0.0.1:{port}/twilio/sms", phones=90_000)
    if emulator is not None:
        emulator.reset()
    first, results = post_all(port, signer, n)
    answers = [1000 * r["seconds"] for r in results]
    out: dict[str, Any] = {
        "webhooks": n,
        "non_200": sum(1 for r in results if r["status"] != 200),
        "answer_p50_ms": percentile(answers, 50),
        "answer_p99_ms": percentile(answers, 99),
        "answer_max_ms": max(answers),
        "over_15s": sum(1 for a in answers if a > 15_000),
    }
    if emulator is None:
        # The quickstart answers in TwiML: its reply leaves with the answer.
        out["all_replies_after_s"] = (
            max(r["started"] + r["seconds"] for r in results) - first
        )
        return out
    phones = {r["phone"] for r in results}
    deadline = time.time() + timeout
    creates: list[tuple[float, str, int | None]] = []
    while time.time() < deadline:
        creates = emulator.creates()
        if len({to for _t, to, _id in creates} & phones) >= len(phones):
            break
        time.sleep(0.05)
    time.sleep(0.5)  # a late duplicate would show up now
    creates = [c for c in emulator.creates() if c[1] in phones]
    per_phone: dict[str, int] = {}
    for _t, to, _id in creates:
        per_phone[to] = per_phone.get(to, 0) + 1
    out.update(
        {
            "replies": len(per_phone),
            "duplicates": sum(count - 1 for count in per_phone.values()),
            "all_replies_after_s": (max(t for t, _to, _id in creates) - first)
            if creates
            else float("nan"),
        }
    )
    return out


BURSTS = 3


def bursts(port: int, emulator: Emulator | None, n: int) -> dict[str, Any]:
    """:func:`measure` ``BURSTS`` times on one server (each burst after the
    last one's replies); the burst with the median webhook p99, and every
    burst's p99 beside it (one burst on 2 shared cores is a noisy figure)."""
    runs = [measure(port, emulator, n) for _ in range(BURSTS)]
    runs.sort(key=lambda r: r["answer_p99_ms"])
    median = dict(runs[len(runs) // 2])
    median["bursts_p99_ms"] = [r["answer_p99_ms"] for r in runs]
    median["bursts_all_replies_after_s"] = [r["all_replies_after_s"] for r in runs]
    median["bursts_duplicates"] = sum(r.get("duplicates", 0) for r in runs)
    median["bursts_replies"] = [r.get("replies") for r in runs]
    return median


def textwire_sqlite(
    cfg: Config, procs: Procs, emulator: Emulator, n: int
) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = textwire_env(
        fresh_sqlite("slowbot.db"),
        base,
        TEXTWIRE_TWILIO_API_URL=emulator.url,
        TEXTWIRE_RATE_LIMIT_MPS="100",
        TEXTWIRE_BOT="bench.slowbot:bot",
    )
    app = procs.start(
        [
            str(VENV_BIN / "textwire"),
            "--log-level",
            "WARNING",
            "run",
            "--port",
            str(port),
        ],
        env=env,
        log="slowbot-sqlite.log",
    )
    try:
        wait_http(base + "/healthz", proc=app)
        result = bursts(port, emulator, n)
    finally:
        procs.stop(app)
    result["layout"] = "textwire run (waitress 8 threads + in-process worker), SQLite"
    return result


def textwire_postgres(
    cfg: Config, procs: Procs, emulator: Emulator, n: int
) -> dict[str, Any]:
    database_url = reset_pg_database()
    migrate(database_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = textwire_env(
        database_url,
        base,
        TEXTWIRE_TWILIO_API_URL=emulator.url,
        TEXTWIRE_RATE_LIMIT_MPS="100",
        TEXTWIRE_BOT="bench.slowbot:bot",
    )
    textwire = str(VENV_BIN / "textwire")
    web = procs.start(
        [textwire, "--log-level", "WARNING", "run", "--no-worker", "--port", str(port)],
        env=env,
        log="slowbot-pg-web.log",
    )
    workers = []
    for i in range(2):
        worker = procs.start(
            [textwire, "--log-level", "WARNING", "worker"],
            env=env,
            log=f"slowbot-pg-worker-{i}.log",
        )
        wait_log(procs.logs[-1], "textwire worker", worker)
        workers.append(worker)
    try:
        wait_http(base + "/healthz", proc=web)
        result = bursts(port, emulator, n)
    finally:
        for proc in [web, *workers]:
            procs.stop(proc)
    result["layout"] = "textwire run --no-worker + 2 textwire worker, PostgreSQL"
    return result


def quickstart(
    cfg: Config, procs: Procs, n: int, *, app_name: str = "slow_app"
) -> dict[str, Any]:
    """The quickstart app under ``waitress-serve --threads 8``: ``slow_app``
    (the same 1 s handler, one burst: it takes 8 s) or ``app`` (no handler
    work at all: the floor of this server and this load generator on this
    machine, median of ``BURSTS``)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = procs.start(
        [
            str(VENV_BIN / "waitress-serve"),
            "--listen",
            f"127.0.0.1:{port}",
            "--threads",
            "8",
            f"bench.baseline_app:{app_name}",
        ],
        env=textwire_env("sqlite:///unused.db", base),
        log=f"slowbot-quickstart-{app_name}.log",
    )
    try:
        wait_http(base + "/", proc=app)
        if app_name == "slow_app":
            result = measure(port, None, n)
        else:
            result = bursts(port, None, n)
    finally:
        procs.stop(app)
    result["layout"] = (
        "quickstart app with the same 1 s handler, waitress 8 threads"
        if app_name == "slow_app"
        else "quickstart app, no handler work, waitress 8 threads"
    )
    return result


def run(cfg: Config, procs: Procs, quiet: Quiet) -> dict[str, Any]:
    n = env_int("BENCH_SLOW_WEBHOOKS", 64)
    WORK.mkdir(parents=True, exist_ok=True)
    emulator = Emulator(procs, cfg.latency)
    try:
        sqlite = quiet.measure(
            lambda: _shared(textwire_sqlite(cfg, procs, emulator, n))
        )
        postgres = quiet.measure(
            lambda: _shared(textwire_postgres(cfg, procs, emulator, n))
        )
    finally:
        procs.stop(emulator.proc)
    baseline = quiet.measure(lambda: _shared(quickstart(cfg, procs, n)))
    floor = quiet.measure(lambda: _shared(quickstart(cfg, procs, n, app_name="app")))
    return {
        "handler_seconds": HANDLER_SECONDS,
        "webhooks": n,
        "sqlite": sqlite,
        "postgresql": postgres,
        "quickstart": baseline,
        "floor": floor,
    }


def _shared(result: dict[str, Any]) -> dict[str, Any]:
    # The slow bot sleeps: CPU shares say little here; record none.
    result.setdefault("other_load_share", 0.0)
    return result

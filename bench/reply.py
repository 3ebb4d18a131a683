"""Reply latency and memory of ``textwire run`` (waitress + in-process worker).

Reply latency: from the moment a signed ``help`` webhook is posted to the
moment the reply's ``messages.create`` reaches the emulator (its arrival,
before the emulator's 100 ms latency), per message, matched by the phone
number (every message comes from its own phone). Two layouts: ``textwire
run`` on SQLite (web and worker in one process), and on PostgreSQL the web
side alone (``textwire run --no-worker``) with two ``textwire worker``
processes, woken by LISTEN/NOTIFY. Shipped defaults, with the sender's rate
limit at the ceiling (``BENCH_RATE_CEILING``) so pacing is not measured.

* idle: one message at a time, waiting for its reply before the next;
* under load: open-loop streams at each of ``BENCH_LOAD_RPS`` messages/s
  (30 and 100) for ``BENCH_LOAD_SECONDS`` (10) each, every message from its
  own phone, sent on schedule whether or not earlier ones were answered.

Memory: VmHWM (peak resident set) from /proc/<pid>/status of the ``textwire
run`` process (summed over it and any children), after start-up and idle
messages, then after the load.
"""

from __future__ import annotations

import http.client
import queue
import threading
import time
from typing import Any

from bench.common import (
    VENV_BIN,
    Config,
    Meter,
    Procs,
    Quiet,
    free_port,
    fresh_sqlite,
    migrate,
    percentile,
    reset_pg_database,
    status_kb,
    textwire_env,
    tree,
    wait_http,
)
from bench.outbound import Emulator, wait_log
from bench.webhooks import Signer


def peak_rss_mb(pid: int) -> float:
    return sum(status_kb(p, "VmHWM") for p in tree(pid)) / 1024


def rss_mb(pid: int) -> float:
    return sum(status_kb(p, "VmRSS") for p in tree(pid)) / 1024


class Poster:
    """Posts signed webhooks over one keep-alive connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, signature: str, body: str) -> int:
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        }
        try:
            self.conn.request("POST", "/twilio/sms", body, headers)
            answer = self.conn.getresponse()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.conn.request("POST", "/twilio/sms", body, headers)
            answer = self.conn.getresponse()
        answer.read()
        return answer.status


def wait_for_replies(
    emulator: Emulator, sent: dict[str, float], timeout: float
) -> dict[str, float]:
    """Latency (s) per phone, for every phone in ``sent`` that got its reply."""
    deadline = time.time() + timeout
    latencies: dict[str, float] = {}
    while True:
        for arrived, to, _outbox in emulator.creates():
            # (a create before the post is an earlier layout's reply to the
            # same phone, never this message's)
            if to in sent and to not in latencies and arrived >= sent[to]:
                latencies[to] = arrived - sent[to]
        if len(latencies) >= len(sent) or time.time() > deadline:
            return latencies
        time.sleep(0.05)


def summary(latencies: dict[str, float], sent: int) -> dict[str, Any]:
    values = [v * 1000 for v in latencies.values()]
    return {
        "messages": sent,
        "replied": len(values),
        "p50_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "p99_ms": percentile(values, 99),
        "max_ms": max(values) if values else float("nan"),
    }


def idle(signer: Signer, poster: Poster, emulator: Emulator, n: int) -> dict[str, Any]:
    sent: dict[str, float] = {}
    latencies: dict[str, float] = {}
    for _ in range(n):
        signature, body, phone = signer.next()
        sent[phone] = time.time()
        status = poster.post(signature, body)
        if status != 200:
            raise RuntimeError(f"webhook answered {status}")
        got = wait_for_replies(emulator, {phone: sent[phone]}, timeout=10)
        latencies.update(got)
        time.sleep(0.05)  # idle between messages
    return summary(latencies, n)


def open_loop(
    signer: Signer, port: int, rps: float, seconds: float
) -> tuple[dict[str, float], list[int], list[float]]:
    """Post message k at start + k/rps (16 sender threads), whatever the answers.

    Returns when each phone's message was posted, the HTTP statuses, and how
    late each post was against its schedule (the generator keeping up).
    """
    total = int(rps * seconds)
    jobs: queue.Queue[tuple[float, str, str, str] | None] = queue.Queue()
    start = time.time() + 0.2
    for k in range(total):
        signature, body, phone = signer.next()
        jobs.put((start + k / rps, signature, body, phone))
    sent: dict[str, float] = {}
    statuses: list[int] = []
    late: list[float] = []
    lock = threading.Lock()

    def sender() -> None:
        poster = Poster(port)
        while True:
            job = jobs.get()
            if job is None:
                return
            due, signature, body, phone = job
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            now = time.time()
            with lock:
                sent[phone] = now
                late.append(now - due)
            status = poster.post(signature, body)
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=sender) for _ in range(16)]
    for _ in threads:
        jobs.put(None)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sent, statuses, late


def under_load(
    signer: Signer, port: int, emulator: Emulator, rps: float, seconds: float
) -> dict[str, Any]:
    sent, statuses, late = open_loop(signer, port, rps, seconds)
    latencies = wait_for_replies(emulator, sent, timeout=30)
    result = summary(latencies, len(sent))
    result.update(
        {
            "offered_rps": rps,
            "seconds": seconds,
            "non_200": sum(1 for s in statuses if s != 200),
            "generator_late_p99_ms": percentile([x * 1000 for x in late], 99),
        }
    )
    return result


def memory(pid: int) -> dict[str, float]:
    return {"peak_mb": peak_rss_mb(pid), "rss_mb": rss_mb(pid)}


def baseline_memory(cfg: Config, procs: Procs) -> dict[str, Any]:
    """The quickstart app in one process, served like ``textwire run`` (waitress,
    8 threads), under the same idle messages and the same open-loop load."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = procs.start(
        [
            str(VENV_BIN / "waitress-serve"),
            "--listen",
            f"127.0.0.1:{port}",
            "--threads",
            "8",
            "bench.baseline_app:app",
        ],
        env=textwire_env("sqlite:///unused.db", base),
        log="reply-baseline-waitress.log",
    )
    try:
        wait_http(base + "/", proc=app)
        signer = Signer(base + "/twilio/sms", phones=80_000)
        time.sleep(2)
        started = memory(app.pid)
        poster = Poster(port)
        for _ in range(cfg.idle_messages):
            signature, body, _phone = signer.next()
            poster.post(signature, body)
        idle_mem = memory(app.pid)
        statuses = []
        for rps in cfg.load_rps:
            _sent, more, _late = open_loop(signer, port, rps, cfg.load_seconds)
            statuses += more
        loaded = memory(app.pid)
    finally:
        procs.stop(app)
    return {
        "server": "bench/baseline_app.py under waitress-serve --threads 8",
        "non_200": sum(1 for s in statuses if s != 200),
        "started": started,
        "idle": idle_mem,
        "after_load": loaded,
    }


def serve(
    cfg: Config, procs: Procs, emulator: Emulator, database: str
) -> tuple[int, list[Any], Any]:
    """Start the layout for ``database``: ``textwire run`` on SQLite; on
    PostgreSQL the web side alone and two ``textwire worker`` processes.
    Returns the web port, every process, and the web process."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    if database == "sqlite":
        database_url = fresh_sqlite("reply.db")
    else:
        database_url = reset_pg_database()
        migrate(database_url)
    env = textwire_env(
        database_url,
        base,
        TEXTWIRE_TWILIO_API_URL=emulator.url,
        TEXTWIRE_RATE_LIMIT_MPS=f"{cfg.ceiling:g}",
    )
    textwire = str(VENV_BIN / "textwire")
    if database == "sqlite":
        web = procs.start(
            [textwire, "run", "--port", str(port)], env=env, log="reply-sqlite.log"
        )
        started = [web]
    else:
        web = procs.start(
            [textwire, "run", "--no-worker", "--port", str(port)],
            env=env,
            log="reply-pg-web.log",
        )
        started = [web]
        for i in range(2):
            worker = procs.start(
                [textwire, "worker"], env=env, log=f"reply-pg-worker-{i}.log"
            )
            wait_log(procs.logs[-1], "textwire worker", worker)
            started.append(worker)
    wait_http(base + "/healthz", proc=web)
    return port, started, web


def latency(
    cfg: Config, procs: Procs, emulator: Emulator, database: str
) -> dict[str, Any]:
    """Idle and open-loop reply latency of one layout (and, on SQLite, the
    memory of the one ``textwire run`` process)."""
    emulator.reset()  # the other layout's messages went to the same phones
    port, started, web = serve(cfg, procs, emulator, database)
    pids = [p.pid for p in started] + [emulator.proc.pid]
    try:
        signer = Signer(f"http://127.0.0.1:{port}/twilio/sms", phones=80_000)
        time.sleep(2)
        rss_start = memory(web.pid)
        meter = Meter(pids, postgres=database == "postgresql")
        idle_result = idle(signer, Poster(port), emulator, cfg.idle_messages)
        idle_result["other_load_share"] = meter.stop()["other_share"]
        rss_idle = memory(web.pid)
        loads = []
        for rps in cfg.load_rps:
            meter = Meter(pids, postgres=database == "postgresql")
            result = under_load(signer, port, emulator, rps, cfg.load_seconds)
            cpu = meter.stop()
            result["other_load_share"] = cpu["other_share"]
            result["machine_busy"] = cpu["machine_busy"]
            loads.append(result)
        rss_load = memory(web.pid)
    finally:
        for proc in started:
            procs.stop(proc)
    layout = (
        "textwire run (waitress, 8 threads, in-process worker), SQLite"
        if database == "sqlite"
        else "textwire run --no-worker + 2 textwire worker processes, PostgreSQL"
    )
    return {
        "server": layout,
        "idle": idle_result,
        "load": loads,
        "memory": {"started": rss_start, "idle": rss_idle, "after_load": rss_load},
    }


def run(cfg: Config, procs: Procs, quiet: Quiet) -> dict[str, Any]:
    """Reply latency on both layouts, memory, the quickstart's memory
    (``quiet`` is not used to redo anything here: the memory readings follow
    one process through the whole sequence)."""
    emulator = Emulator(procs, cfg.latency)
    try:
        sqlite = latency(cfg, procs, emulator, "sqlite")
        postgres = latency(cfg, procs, emulator, "postgresql")
    finally:
        procs.stop(emulator.proc)
    return {
        **sqlite,
        "postgresql": postgres,
        "baseline_memory": baseline_memory(cfg, procs),
    }

"""Broadcasts: importing a big list, and sending one while replies go first.

* import: ``textwire broadcast create big.csv --yes --queue-only`` on
  ``BENCH_BROADCAST_ROWS`` (100,000) generated rows, on PostgreSQL and on
  SQLite: the preview pass and the queueing pass over the file, rows/s of the
  whole command and its peak RSS (``ru_maxrss`` of that process, from wait4).
* send: a ``BENCH_BROADCAST_RECIPIENTS`` (10,000) broadcast drained by
  ``textwire run`` (its in-process worker, PostgreSQL) against the emulator
  at ``BENCH_API_LATENCY`` with the rate limit at ``BENCH_RATE_CEILING``
  (300 segments/s): share of the ceiling from the first create to the last,
  duplicates per outbox id. Meanwhile signed ``help`` messages from other
  phones arrive (``BENCH_BROADCAST_REPLY_RPS``, 2/s): their replies' latency
  from the webhook to ``messages.create`` at the emulator.
* replies at 1 segment/s: the same with the sender at a long code's 1
  segment/s and the broadcast's rows queued ahead: reply latency p50/p99.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import (
    VENV_BIN,
    WORK,
    Config,
    Meter,
    Procs,
    Quiet,
    env_float,
    env_int,
    free_port,
    fresh_sqlite,
    migrate,
    percentile,
    reset_pg_database,
    textwire_env,
    wait_http,
)
from bench.outbound import Emulator
from bench.reply import Poster
from bench.webhooks import Signer, phone

BODY = "Hi {first_name}, your order {order} has shipped. Reply STOP to opt out."
ROWS = env_int("BENCH_BROADCAST_ROWS", 100_000)
RECIPIENTS = env_int("BENCH_BROADCAST_RECIPIENTS", 10_000)
REPLY_RPS = env_float("BENCH_BROADCAST_REPLY_RPS", 2.0)
SLOW_REPLIES = env_int("BENCH_BROADCAST_SLOW_REPLIES", 20)
# Inbound phones: far from the broadcast's (bench.webhooks.phone indexes).
FIRST_REPLY_PHONE = 80_000


def recipient(i: int) -> str:
    """The ``i``-th recipient: ``phone(i)`` below the inbound phones' range,
    then numbers of an area code of their own."""
    return phone(i) if i < FIRST_REPLY_PHONE else f"+1925{2000000 + i:07d}"


def write_list(path: Path, rows: int) -> Path:
    """A CSV of ``rows`` distinct recipients, written line by line."""
    with path.open("w", encoding="utf-8") as out:
        out.write("phone,first_name,order\n")
        for i in range(rows):
            out.write(f"{recipient(i)},Member{i},A{i:06d}\n")
    return path


def textwire_cmd(args: list[str], env: dict[str, str], log: str) -> dict[str, Any]:
    """Run ``textwire ARGS`` to its end; wall seconds and peak RSS (MB)."""
    full = dict(os.environ)
    full.update(env)
    WORK.mkdir(parents=True, exist_ok=True)
    with (WORK / log).open("ab") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [str(VENV_BIN / "textwire"), "--log-level", "WARNING", *args],
            env=full,
            cwd=WORK,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"textwire {' '.join(args)} exited {proc.returncode}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024}


def import_figure(database: str, url: str) -> dict[str, Any]:
    path = write_list(WORK / "broadcast-big.csv", ROWS)
    env = textwire_env(url, "http://127.0.0.1:9")
    result = textwire_cmd(
        ["broadcast", "create", str(path), "--body", BODY, "--yes", "--queue-only"],
        env,
        f"broadcast-import-{database}.log",
    )
    result.update(
        {
            "database": database,
            "rows": ROWS,
            "rows_per_s": ROWS / result["seconds"],
            "file_mb": path.stat().st_size / 1e6,
        }
    )
    path.unlink()
    return result


class Run:
    """``textwire run`` on a fresh PostgreSQL database, with a broadcast of
    ``recipients`` queued (not yet sending) and the emulator reset."""

    def __init__(
        self, cfg: Config, procs: Procs, emulator: Emulator, mps: float, label: str
    ) -> None:
        self.url = reset_pg_database()
        migrate(self.url)
        emulator.reset()
        self.emulator = emulator
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = textwire_env(
            self.url,
            self.base,
            TEXTWIRE_TWILIO_API_URL=emulator.url,
            TEXTWIRE_RATE_LIMIT_MPS=f"{mps:g}",
        )
        path = write_list(WORK / f"broadcast-{label}.csv", RECIPIENTS)
        # Queued paused: nothing goes before the app is up and measured.
        textwire_cmd(
            ["broadcast", "create", str(path), "--body", BODY, "--yes", "--queue-only"],
            self.env,
            f"broadcast-{label}-create.log",
        )
        textwire_cmd(["broadcast", "pause", "1"], self.env, f"broadcast-{label}.log")
        self.bulk = {recipient(i) for i in range(RECIPIENTS)}
        self.app = procs.start(
            [
                str(VENV_BIN / "textwire"),
                "--log-level",
                "WARNING",
                "run",
                "--port",
                str(self.port),
            ],
            env=self.env,
            log=f"broadcast-{label}-run.log",
        )
        wait_http(self.base + "/healthz", proc=self.app)
        self.signer = Signer(
            self.base + "/twilio/sms", phones=5_000, first_phone=FIRST_REPLY_PHONE
        )
        self.poster = Poster(self.port)

    def start_broadcast(self) -> float:
        textwire_cmd(
            ["broadcast", "resume", "1", "--queue-only"],
            self.env,
            "broadcast-resume.log",
        )
        return time.time()

    def post_reply(self, sent: dict[str, float]) -> None:
        signature, body, sender = self.signer.next()
        sent[sender] = time.time()
        status = self.poster.post(signature, body)
        if status != 200:
            raise RuntimeError(f"webhook answered {status}")

    def latencies(self, sent: dict[str, float]) -> list[float]:
        found: dict[str, float] = {}
        for arrived, to, _outbox in self.emulator.creates():
            if to in sent and to not in found:
                found[to] = (arrived - sent[to]) * 1000
        return list(found.values())


def send_figure(cfg: Config, procs: Procs, emulator: Emulator) -> dict[str, Any]:
    run = Run(cfg, procs, emulator, cfg.ceiling, "send")
    try:
        meter = Meter([run.app.pid, emulator.proc.pid], postgres=True)
        t0 = run.start_broadcast()
        sent: dict[str, float] = {}
        deadline = t0 + max(60.0, 3 * RECIPIENTS / cfg.ceiling)
        next_reply = t0
        while time.time() < deadline:
            if time.time() >= next_reply:
                run.post_reply(sent)
                next_reply += 1 / REPLY_RPS
            creates = emulator.creates()
            if sum(1 for _t, to, _o in creates if to in run.bulk) >= RECIPIENTS:
                break
            time.sleep(0.05)
        cpu = meter.stop()
        time.sleep(1.0)  # the last replies, and a stray late duplicate
        creates = emulator.creates()
        bulk_times = sorted(t for t, to, _o in creates if to in run.bulk)
        per_outbox = Counter(m["outbox"] for m in emulator.messages())
        span = bulk_times[-1] - bulk_times[0] if len(bulk_times) > 1 else float("nan")
        mps = (len(bulk_times) - 1) / span if len(bulk_times) > 1 else 0.0
        latencies = run.latencies(sent)
    finally:
        procs.stop(run.app)
    return {
        "recipients": RECIPIENTS,
        "created": len(bulk_times),
        "duplicates": sum(c - 1 for c in per_outbox.values() if c > 1),
        "seconds": round(span, 3),
        "mps": mps,
        "share_of_ceiling": mps / cfg.ceiling,
        "replies": len(sent),
        "replied": len(latencies),
        "reply_p50_ms": percentile(latencies, 50),
        "reply_p99_ms": percentile(latencies, 99),
        "machine_busy": cpu["machine_busy"],
        "other_load_share": cpu["other_share"],
    }


def slow_sender_figure(cfg: Config, procs: Procs, emulator: Emulator) -> dict[str, Any]:
    run = Run(cfg, procs, emulator, 1.0, "slow")
    try:
        meter = Meter([run.app.pid, emulator.proc.pid], postgres=True)
        run.start_broadcast()
        time.sleep(3.0)  # the broadcast holds the sender: 1 segment/s
        sent: dict[str, float] = {}
        for _ in range(SLOW_REPLIES):
            run.post_reply(sent)
            time.sleep(2.5)  # each reply takes a second of the sender
        time.sleep(3.0)
        cpu = meter.stop()
        latencies = run.latencies(sent)
        bulk_sent = sum(1 for _t, to, _o in emulator.creates() if to in run.bulk)
    finally:
        procs.stop(run.app)
    return {
        "mps": 1.0,
        "queued_bulk": RECIPIENTS,
        "bulk_sent_meanwhile": bulk_sent,
        "replies": len(sent),
        "replied": len(latencies),
        "reply_p50_ms": percentile(latencies, 50),
        "reply_p99_ms": percentile(latencies, 99),
        "other_load_share": cpu["other_share"],
    }


def run(cfg: Config, procs: Procs, quiet: Quiet) -> dict[str, Any]:
    WORK.mkdir(parents=True, exist_ok=True)
    imports = [
        import_figure("postgresql", _fresh_pg()),
        import_figure("sqlite", fresh_sqlite("broadcast-import.db")),
    ]
    emulator = Emulator(procs, cfg.latency)
    try:
        send = quiet.measure(lambda: send_figure(cfg, procs, emulator))
        slow = slow_sender_figure(cfg, procs, emulator)
    finally:
        procs.stop(emulator.proc)
    return {
        "latency_s": cfg.latency,
        "ceiling_mps": cfg.ceiling,
        "import": imports,
        "send": send,
        "slow_sender": slow,
    }


def _fresh_pg() -> str:
    url = reset_pg_database()
    migrate(url)
    return url

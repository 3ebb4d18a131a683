"""Outbound throughput: messages/s created at the emulator (100 ms API latency).

Each textwire configuration drains one prefilled outbox of ``N`` replies (the
help desk's text and two pictures, each to its own phone) on a fresh
PostgreSQL database, paced by the rate limit set to the ceiling
(``TEXTWIRE_RATE_LIMIT_MPS``). Throughput is counted at the emulator, from
the arrival of the first create call to the last. Every outbox id must be
created exactly once: duplicates and lost rows are counted from the
emulator's own message list.

The baseline is the loop a quickstart bot runs: ``client.messages.create``
after ``client.messages.create`` with the twilio client.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    BOT_NUMBER,
    VENV_BIN,
    Config,
    Meter,
    Procs,
    Quiet,
    env_int,
    free_port,
    migrate,
    reset_pg_database,
    textwire_env,
    tree_cpu,
    wait_http,
)
from bench.webhooks import phone

HELP_TEXT = (
    "Hi from the textwire help desk! Reply HOURS for opening hours or "
    "TICKET to report a problem. A person answers within one working day."
)
# Where the apps say they live: the carrier is off, so nobody calls it.
PUBLIC_URL = "http://127.0.0.1:9"
# Runs of each configuration; the median is reported (BENCH_OUTBOUND_REPEAT).
REPEAT = env_int("BENCH_OUTBOUND_REPEAT", 3)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.load(answer)


def post(url: str) -> None:
    req = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=30):
        pass


class Emulator:
    """``python -m bench.emulator`` in a process of its own."""

    def __init__(self, procs: Procs, latency: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = procs.start(
            [
                str(VENV_BIN / "python"),
                "-m",
                "bench.emulator",
                "--port",
                str(self.port),
                "--latency",
                str(latency),
            ],
            log="emulator.log",
        )
        wait_http(self.url + "/healthz", proc=self.proc)
        self._seen: list[tuple[float, str, int | None]] = []

    def reset(self) -> None:
        post(self.url + "/bench/reset")
        self._seen = []

    def creates(self) -> list[tuple[float, str, int | None]]:
        """Every create so far (fetched anew only past those seen before:
        polling the whole list many times a second loaded the machine)."""
        fresh = get_json(f"{self.url}/bench/creates?since={len(self._seen)}")
        self._seen.extend(tuple(row) for row in fresh)
        return list(self._seen)

    def messages(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = get_json(self.url + "/bench/messages")
        return rows

    def cpu(self) -> float:
        return tree_cpu(self.proc.pid)


def wait_log(path: Path, text: str, proc: Any, timeout: float = 30.0) -> None:
    """Wait until ``text`` appears in the log at ``path``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{text!r} not in {path} after {timeout:.0f} s")


def prefill(database_url: str, n: int) -> list[int]:
    """Queue ``n`` replies, each to its own phone, as the webhook would."""
    from textwire.storage.sql import SqlStore

    store = SqlStore(database_url)
    now = datetime.now(UTC)
    media = [f"{PUBLIC_URL}/media/logo.png", f"{PUBLIC_URL}/media/helpdesk.png"]
    try:
        with store.begin() as conn:
            return [
                store.outbox.enqueue(
                    conn,
                    to=phone(i),
                    body=HELP_TEXT,
                    media=media,
                    from_=BOT_NUMBER,
                    messaging_service_sid=None,
                    now=now,
                )
                for i in range(n)
            ]
    finally:
        store.dispose()


def quickstart_loop(emulator_url: str, n: int) -> dict[str, Any]:
    """One ``client.messages.create`` after another, as a quickstart bot sends."""
    from twilio.rest import Client

    client = Client(ACCOUNT_SID, AUTH_TOKEN)
    client.api.base_url = emulator_url
    start = time.perf_counter()
    for i in range(n):
        client.messages.create(
            to=phone(50_000 + i),
            from_=BOT_NUMBER,
            body=HELP_TEXT,
            media_url=[f"{PUBLIC_URL}/media/logo.png"],
        )
    elapsed = time.perf_counter() - start
    return {"messages": n, "seconds": round(elapsed, 3), "mps": n / elapsed}


def drain(
    cfg: Config,
    procs: Procs,
    emulator: Emulator,
    *,
    label: str,
    workers: int,
    in_process: bool,
    settings: dict[str, str],
    messages: int,
) -> dict[str, Any]:
    """Start the senders on an empty outbox, queue ``messages`` rows at once,
    and wait until the emulator has them all (or ``BENCH_OUTBOUND_TIMEOUT``
    passed: what was sent by then is counted). CPU is counted from the
    moment the rows are queued, so start-up (imports, connecting) is not."""
    database_url = reset_pg_database()
    migrate(database_url)
    emulator.reset()
    env = textwire_env(
        database_url,
        PUBLIC_URL,
        TEXTWIRE_TWILIO_API_URL=emulator.url,
        TEXTWIRE_RATE_LIMIT_MPS=f"{cfg.ceiling:g}",
        **settings,
    )
    started = []
    textwire = str(VENV_BIN / "textwire")
    for i in range(workers):
        log = f"outbound-{label}-{i}.log".replace(" ", "-")
        if in_process:
            port = free_port()
            args = [textwire, "--log-level", "WARNING", "run", "--port", str(port)]
            proc = procs.start(args, env=env, log=log)
            wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
        else:
            args = [textwire, "--log-level", "WARNING", "worker"]
            proc = procs.start(args, env=env, log=log)
            wait_log(procs.logs[-1], "textwire worker", proc)
        started.append(proc)
    time.sleep(0.5)
    cpu0 = emulator.cpu()
    workers_cpu0 = sum(tree_cpu(p.pid) for p in started)
    meter = Meter([emulator.proc.pid] + [p.pid for p in started], postgres=True)
    t0 = time.time()
    ids = prefill(database_url, messages)
    deadline = t0 + cfg.outbound_timeout
    creates: list[tuple[float, str, int | None]] = []
    while time.time() < deadline:
        time.sleep(0.25)
        creates = emulator.creates()
        if len(creates) >= messages:
            break
    cpu = meter.stop()
    worker_cpu = sum(tree_cpu(p.pid) for p in started) - workers_cpu0
    emulator_cpu = emulator.cpu() - cpu0
    pg_cpu = cpu["postgres_cpu_s"]
    for proc in started:
        procs.stop(proc)
    time.sleep(0.3)  # a stray late duplicate would show up now
    creates = emulator.creates()
    created = emulator.messages()
    per_id = Counter(m["outbox"] for m in created)
    duplicates = sum(count - 1 for count in per_id.values() if count > 1)
    missing = sum(1 for i in ids if per_id[i] == 0)
    times = sorted(t for t, _to, _id in creates)
    span = times[-1] - times[0] if len(times) > 1 else float("nan")
    mps = (len(times) - 1) / span if len(times) > 1 else 0.0
    n = max(1, len(created))
    return {
        "label": label,
        "workers": workers,
        "in_process": in_process,
        "settings": settings,
        "queued": messages,
        "created": len(created),
        "duplicates": duplicates,
        "not_sent_by_deadline": missing,
        "seconds": round(span, 3),
        "mps": mps,
        "share_of_ceiling": mps / cfg.ceiling,
        "first_create_after_s": round(times[0] - t0, 3) if times else None,
        "cpu_ms_per_msg": {
            "workers": 1000 * worker_cpu / n,
            "emulator": 1000 * emulator_cpu / n,
            "postgres": 1000 * pg_cpu / n,
        },
        "machine_busy": cpu["machine_busy"],
        "other_load_share": cpu["other_share"],
    }


def run(cfg: Config, procs: Procs, quiet: Quiet) -> dict[str, Any]:
    """Shipped defaults (the worker sizes its concurrency from the sender's
    ceiling and the latency it sees), 1 and 4 worker processes, and
    ``textwire run``."""
    emulator = Emulator(procs, cfg.latency)
    n = cfg.outbound_messages or int(cfg.ceiling * 10)
    try:
        loop = quickstart_loop(emulator.url, cfg.loop_messages)
        plan: list[tuple[str, int, bool]] = [
            ("1 textwire worker", 1, False),
            ("4 textwire workers", 4, False),
            ("in-process (textwire run)", 1, True),
        ]
        runs = []
        for label, workers, in_process in plan:

            def once(
                label: str = label,
                workers: int = workers,
                in_process: bool = in_process,
            ) -> dict[str, Any]:
                return drain(
                    cfg,
                    procs,
                    emulator,
                    label=label,
                    workers=workers,
                    in_process=in_process,
                    settings={},
                    messages=n,
                )

            # The median of a few runs: one run's rate moves by ±5 % here.
            tries = [quiet.measure(once) for _ in range(max(1, REPEAT))]
            tries.sort(key=lambda entry: entry["mps"])
            median = dict(tries[len(tries) // 2])
            median["all_mps"] = [round(entry["mps"], 1) for entry in tries]
            median["duplicates"] = sum(entry["duplicates"] for entry in tries)
            median["created"] = sum(entry["created"] for entry in tries)
            runs.append(median)
    finally:
        procs.stop(emulator.proc)
    for entry in runs:
        entry["vs_loop"] = entry["mps"] / loop["mps"]
    return {
        "latency_s": cfg.latency,
        "ceiling_mps": cfg.ceiling,
        "quickstart_loop": loop,
        "runs": runs,
    }

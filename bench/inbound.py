"""Inbound throughput and latency of ``POST /twilio/sms`` under gunicorn.

Each server runs under ``gunicorn -w 2`` (sync workers, and gthread workers
with ``BENCH_GTHREAD_THREADS`` threads each) on 127.0.0.1, and is loaded by
one closed-loop wrk run per connection count (``BENCH_CONNECTIONS``, default
1 2 4 8 16), each ``BENCH_DURATION`` seconds, after a warm-up run. Every
request is a distinct, validly signed ``help`` message from one of 90,000
contacts (see ``bench/webhooks.py``), so textwire takes its full path:
signature, parse, the inbox insert (deduplicated by MessageSid), commit. The
bot runs later, in a worker; none runs here, so what is measured is what
Twilio waits for.

The baseline (``bench/baseline_app.py``) runs with the same gunicorn flags
and the same pool of signed requests. Its saturation load is the smallest
connection count whose throughput reaches 90 % of its best in the sweep;
textwire's p99 is read at that connection count.
"""

from __future__ import annotations

import functools
import json
import resource
import subprocess
import time
from typing import Any

from bench.common import (
    BENCH,
    VENV_BIN,
    WORK,
    Config,
    Meter,
    Procs,
    Quiet,
    free_port,
    fresh_sqlite,
    migrate,
    reset_pg_database,
    textwire_env,
    tree_cpu,
    wait_http,
)
from bench.webhooks import Signer

LUA = BENCH / "wrk_post.lua"
SATURATION_SHARE = 0.9


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(
    url: str, pool: str, connections: int, seconds: int
) -> tuple[dict[str, Any], float]:
    """One wrk run; its summary (from the Lua ``done``) and wrk's own CPU seconds."""
    before = children_cpu()
    done = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            url,
            "--",
            pool,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    cpu = children_cpu() - before
    for line in done.stdout.splitlines():
        if line.startswith("WRKJSON "):
            summary: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
            return summary, cpu
    raise RuntimeError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")


def gunicorn_args(app: str, port: int, worker_class: str, cfg: Config) -> list[str]:
    args = [
        str(VENV_BIN / "gunicorn"),
        "-w",
        str(cfg.gunicorn_workers),
        "-b",
        f"127.0.0.1:{port}",
        "--worker-class",
        worker_class,
    ]
    if worker_class == "gthread":
        args += ["--threads", str(cfg.gthread_threads)]
    return [*args, app]


def sweep(
    cfg: Config,
    procs: Procs,
    quiet: Quiet,
    *,
    label: str,
    app: str,
    worker_class: str,
    database: str | None,
) -> dict[str, Any]:
    """Start one server, warm it up, and run wrk at each connection count."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = base + "/twilio/sms"
    env: dict[str, str] = {}
    database_url = None
    if database == "sqlite":
        database_url = fresh_sqlite("inbound.db")
    elif database == "postgresql":
        database_url = reset_pg_database()
    if database_url:
        migrate(database_url)  # before several gunicorn processes start
        env = textwire_env(database_url, base)
    else:
        env = textwire_env("sqlite:///unused.db", base)
    server = procs.start(
        gunicorn_args(app, port, worker_class, cfg),
        env=env,
        log=f"inbound-{label.replace(' ', '-')}.log",
    )
    levels: list[dict[str, Any]] = []
    try:
        wait_http(base + "/", proc=server)
        # 90,000 contacts: a contact number is (almost) never one seen before.
        signer = Signer(url, phones=90_000)
        pool = WORK / "pool.txt"
        seconds = max(1, round(cfg.duration))
        warm = max(1, round(cfg.warmup))
        signer.write_pool(pool, cfg.pool_rps * warm)
        wrk(url, str(pool), 2, warm)
        fastest = float(cfg.pool_rps) / 2.5

        def measure(connections: int) -> dict[str, Any]:
            # Enough new signed requests for this run: 2.5 x the fastest
            # level so far (more connections never went faster than that).
            size = int(min(cfg.pool_rps, max(2.5 * fastest, 2000)) * (seconds + 1))
            signer.write_pool(pool, size)
            app_cpu0 = tree_cpu(server.pid)
            meter = Meter([server.pid], postgres=database == "postgresql")
            summary, wrk_cpu = wrk(url, str(pool), connections, seconds)
            cpu = meter.stop()
            app_cpu = tree_cpu(server.pid) - app_cpu0
            wall = summary["duration_us"] / 1e6
            requests = summary["requests"]
            lat = summary["latency_us"]
            return {
                "connections": connections,
                "requests": requests,
                "rps": requests / wall,
                "p50_ms": lat["p50"] / 1000,
                "p90_ms": lat["p90"] / 1000,
                "p99_ms": lat["p99"] / 1000,
                "max_ms": lat["max"] / 1000,
                "errors": sum(summary["errors"].values()),
                "pool_exhausted": summary["exhausted"],
                "server_cpu_ms_per_req": 1000 * app_cpu / max(1, requests),
                "postgres_cpu_ms_per_req": 1000
                * cpu["postgres_cpu_s"]
                / max(1, requests),
                "generator_cpu_share": wrk_cpu / wall,
                "machine_busy": cpu["machine_busy"],
                "other_load_share": cpu["other_share"],
            }

        for connections in cfg.connections:
            level = quiet.measure(functools.partial(measure, connections))
            levels.append(level)
            fastest = max(fastest, level["rps"])
    finally:
        procs.stop(server)
        (WORK / "pool.txt").unlink(missing_ok=True)  # tens of MB of requests
    best = max(levels, key=lambda level: level["rps"])
    saturated = next(
        level for level in levels if level["rps"] >= SATURATION_SHARE * best["rps"]
    )
    return {
        "label": label,
        "app": app,
        "worker_class": worker_class,
        "database": database,
        "levels": levels,
        "peak_rps": best["rps"],
        "peak_connections": best["connections"],
        "saturation_connections": saturated["connections"],
    }


def at(result: dict[str, Any], connections: int) -> dict[str, Any]:
    for level in result["levels"]:
        if level["connections"] == connections:
            found: dict[str, Any] = level
            return found
    raise KeyError(connections)


def run(cfg: Config, procs: Procs, quiet: Quiet) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for worker_class in ("sync", "gthread"):
        baseline = sweep(
            cfg,
            procs,
            quiet,
            label=f"baseline {worker_class}",
            app="bench.baseline_app:app",
            worker_class=worker_class,
            database=None,
        )
        entry: dict[str, Any] = {"baseline": baseline}
        for database in ("sqlite", "postgresql"):
            tw = sweep(
                cfg,
                procs,
                quiet,
                label=f"textwire {database} {worker_class}",
                app="textwire.web:create_app()",
                worker_class=worker_class,
                database=database,
            )
            load = baseline["saturation_connections"]
            tw["ratio_peak_rps"] = tw["peak_rps"] / baseline["peak_rps"]
            tw["at_baseline_saturation"] = at(tw, load)
            most = max(cfg.connections)
            tw["at_most_connections"] = at(tw, most)
            tw["ratio_at_most_connections"] = (
                at(tw, most)["rps"] / at(baseline, most)["rps"]
            )
            entry[database] = tw
        results[worker_class] = entry
        time.sleep(0.5)
    return results

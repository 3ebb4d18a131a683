"""``python -m bench``: run every benchmark, write results/latest.{md,json}
(a run of some parts writes results/partial.json instead).

Environment (all optional):

* ``BENCH_ONLY=inbound,slowbot,outbound,reply,broadcast``: run only these parts;
* ``BENCH_QUIET_LIMIT``, ``BENCH_QUIET_WAIT`` (0.10, 120 s): before starting,
  wait up to that long for other work on the machine to drop below that
  share of the cores; ``BENCH_QUIET_BUDGET`` (180 s): how long in all to
  wait for quiet to redo a measurement other work disturbed;
* the durations and sizes of ``bench.common.Config`` (``BENCH_DURATION``,
  ``BENCH_CONNECTIONS``, ``BENCH_RATE_CEILING`` …);
* ``BENCH_PG_ADMIN_URL`` (``postgresql://postgres@127.0.0.1:5432/test``),
  used only to drop and create the ``BENCH_PG_DB`` database
  (``textwire_bench``).

Parts: ``inbound`` (the webhook under gunicorn against the quickstart app),
``slowbot`` (64 webhooks to a bot whose handler takes a second),
``outbound`` (the worker at the sender's ceiling), ``reply`` (webhook to
``messages.create`` latency, and memory), ``broadcast`` (a 100,000-row
import, a 10,000-recipient broadcast and the replies sent meanwhile).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from typing import Any

from bench import broadcast, inbound, outbound, reply, slowbot
from bench.common import (
    RESULTS,
    Config,
    Quiet,
    drop_pg_database,
    env_float,
    machine,
    processes,
    source_state,
    wait_quiet,
)
from bench.report import markdown

PARTS = ("inbound", "slowbot", "outbound", "reply", "broadcast")


def command() -> str:
    """How to repeat this run: ``make bench`` with the BENCH_* variables set."""
    settings = [
        f"{key}={value}"
        for key, value in sorted(os.environ.items())
        if key.startswith("BENCH_")
    ]
    return " ".join([*settings, "make bench"])


def main() -> int:
    if shutil.which("wrk") is None:
        print("bench: wrk is missing (apt-get install wrk)", file=sys.stderr)
        return 2
    only = [p for p in os.environ.get("BENCH_ONLY", "").replace(",", " ").split() if p]
    parts = only or list(PARTS)
    cfg = Config()
    # A shared machine: wait (bounded) for other work to calm down first.
    before = wait_quiet(cfg.quiet_limit, env_float("BENCH_QUIET_WAIT", 120.0))
    quiet = Quiet(cfg.quiet_limit, cfg.quiet_budget)
    started = time.time()
    results: dict[str, Any] = {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command(),
        "machine": machine(),
        "source": source_state(),
        "other_load_before": before,
        "settings": {
            field.name: getattr(cfg, field.name) for field in dataclasses.fields(cfg)
        },
    }
    runners = {
        "inbound": inbound.run,
        "slowbot": slowbot.run,
        "outbound": outbound.run,
        "reply": reply.run,
        "broadcast": broadcast.run,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    try:
        with processes() as procs:
            for part in parts:
                t0 = time.time()
                print(f"bench: {part}…", file=sys.stderr, flush=True)
                results[part] = runners[part](cfg, procs, quiet)
                print(
                    f"bench: {part} done in {time.time() - t0:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        if parts:
            drop_pg_database()
    results["seconds"] = time.time() - started
    results["redone_measurements"] = quiet.redone
    # A run of some parts leaves the whole run's figures alone.
    whole = all(part in results for part in PARTS)
    name = "latest" if whole else "partial"
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    if whole:
        text = markdown(results)
        (RESULTS / f"{name}.md").write_text(text)
        print(text)
    else:
        print(json.dumps({p: results[p] for p in parts}, indent=2))
    print(f"bench: wrote {RESULTS / name}.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

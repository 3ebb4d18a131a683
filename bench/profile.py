"""Profile textwire under the bench's load with py-spy; print the top frames.

    .venv/bin/pip install py-spy
    .venv/bin/python -m bench.profile inbound-postgresql   # or inbound-sqlite
    .venv/bin/python -m bench.profile worker               # 2 workers draining

``inbound-*``: gunicorn -w 2 (sync) with ``textwire.web:create_app()`` under
wrk at 4 connections (the quickstart's saturation load here); py-spy samples
one gunicorn worker. ``worker``: two ``textwire worker`` processes (the
bench's tuned settings) drain a prefilled outbox through the emulator at
100 ms; py-spy samples one of them.

py-spy runs with ``--nonblocking`` (the process is never paused) and, unless
``--wall``, ``--gil`` (only samples holding the GIL: where the CPU goes in
Python). Frames are aggregated by function: *inclusive* is the share of
samples with the function anywhere on the stack, *self* at the top.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    VENV_BIN,
    WORK,
    Config,
    Procs,
    children,
    free_port,
    fresh_sqlite,
    migrate,
    processes,
    reset_pg_database,
    textwire_env,
    wait_http,
)
from bench.inbound import LUA, gunicorn_args
from bench.outbound import PUBLIC_URL, Emulator, prefill, wait_log
from bench.webhooks import Signer


def frame_name(frame: str) -> str:
    """``func (path/to/file.py:12)`` → ``func (file.py)``."""
    if " (" not in frame:
        return frame
    func, where = frame.split(" (", 1)
    return f"{func} ({where.split(':')[0].rsplit('/', 1)[-1]})"


def package(frame: str) -> str:
    """The top-level package (or stdlib module) a frame's code is in."""
    if " (" not in frame:
        return "?"
    where = frame.split(" (", 1)[1].split(":")[0].rstrip(")")
    return where.split("/", 1)[0].removesuffix(".py")


# Frames of the server loop and the thread pool, on every sample.
SCAFFOLD = {"gunicorn", "threading", "concurrent"}


def top_frames(raw: Path, n: int) -> str:
    """Self time by package, then the functions with the most inclusive and
    self time (frames on nearly every sample, the server's loop, left out)."""
    inclusive: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    scaffold: dict[str, bool] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        frames = stack.split(";")
        total += samples
        for frame in frames:
            if package(frame) in SCAFFOLD or frame.startswith("<module>"):
                scaffold[frame_name(frame)] = True
        for name in {frame_name(f) for f in frames}:
            inclusive[name] += samples
        self_[frame_name(frames[-1])] += samples
        packages[package(frames[-1])] += samples
    if not total:
        return "no samples"

    def share(value: int) -> str:
        return f"{100 * value / total:5.1f} %"

    lines = [f"{total} samples", "", "self time by package:"]
    lines += [f"{share(v)}  {k}" for k, v in packages.most_common(12)]
    lines += ["", "inclusive (the server's and the thread pool's own frames left out):"]
    shown = [
        (k, v)
        for k, v in inclusive.most_common()
        if scaffold.get(k) is None and v < 0.97 * total
    ]
    lines += [f"{share(v)}  {k}" for k, v in shown[:n]]
    lines += ["", "self:"]
    lines += [f"{share(v)}  {k}" for k, v in self_.most_common(n // 2)]
    return "\n".join(lines)


def py_spy(pid: int, seconds: int, out: Path, *, wall: bool) -> None:
    args = [
        str(VENV_BIN / "py-spy"),
        "record",
        "-p",
        str(pid),
        "-d",
        str(seconds),
        "-r",
        "250",
        "-f",
        "raw",
        "-o",
        str(out),
        "--nonblocking",
    ]
    if not wall:
        args.append("--gil")
    subprocess.run(args, check=True, capture_output=True)


def inbound(procs: Procs, database: str, seconds: int, out: Path, wall: bool) -> None:
    cfg = Config()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = base + "/twilio/sms"
    database_url = (
        fresh_sqlite("profile.db") if database == "sqlite" else reset_pg_database()
    )
    migrate(database_url)
    server = procs.start(
        gunicorn_args("textwire.web:create_app()", port, "sync", cfg),
        env=textwire_env(database_url, base),
        log="profile-gunicorn.log",
    )
    wait_http(base + "/healthz", proc=server)
    pool = WORK / "profile-pool.txt"
    Signer(url, phones=5000).write_pool(pool, 1500 * (seconds + 4))
    load = subprocess.Popen(
        [
            "wrk",
            "-t1",
            "-c4",
            f"-d{seconds + 3}s",
            "-s",
            str(LUA),
            url,
            "--",
            str(pool),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.5)
        py_spy(children(server.pid)[0], seconds, out, wall=wall)
    finally:
        load.wait()
        pool.unlink(missing_ok=True)


def worker(procs: Procs, seconds: int, out: Path, wall: bool) -> None:
    cfg = Config()
    emulator = Emulator(procs, cfg.latency)
    database_url = reset_pg_database()
    migrate(database_url)
    env = textwire_env(
        database_url,
        PUBLIC_URL,
        TEXTWIRE_TWILIO_API_URL=emulator.url,
        TEXTWIRE_RATE_LIMIT_MPS=f"{cfg.ceiling:g}",
        TEXTWIRE_WORKER_CONCURRENCY=str(cfg.worker_concurrency),
        TEXTWIRE_WORKER_BATCH_SIZE=str(cfg.worker_batch),
    )
    workers = []
    for i in range(2):
        args = [str(VENV_BIN / "textwire"), "--log-level", "WARNING", "worker"]
        workers.append(procs.start(args, env=env, log=f"profile-worker-{i}.log"))
        wait_log(procs.logs[-1], "textwire worker", workers[-1])
    prefill(database_url, int(cfg.ceiling * (seconds + 10)))
    time.sleep(1.5)
    py_spy(workers[0].pid, seconds, out, wall=wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "what", choices=["inbound-sqlite", "inbound-postgresql", "worker"]
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--wall", action="store_true", help="all samples, not --gil")
    parser.add_argument(
        "--raw", type=Path, help="print the top frames of this py-spy raw file only"
    )
    args = parser.parse_args()
    if args.raw:
        print(top_frames(args.raw, args.top))
        return
    out = WORK / f"profile-{args.what}.txt"
    WORK.mkdir(parents=True, exist_ok=True)
    with processes() as procs:
        if args.what == "worker":
            worker(procs, args.seconds, out, args.wall)
        else:
            inbound(procs, args.what.split("-", 1)[1], args.seconds, out, args.wall)
    print(f"py-spy raw samples: {out}", file=sys.stderr)
    print(top_frames(out, args.top))


if __name__ == "__main__":
    main()

"""What every benchmark shares: settings, processes, ports, /proc readings."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
WORK = RESULTS / "work"
VENV_BIN = Path(sys.executable).parent

# Made-up credentials: the emulator and the apps under test share them.
ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench0123456789abcdef0123456789ab"
BOT_NUMBER = "+14155550100"

PG_ADMIN_URL = os.environ.get(
    "BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
PG_BENCH_DB = os.environ.get("BENCH_PG_DB", "textwire_bench")


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def env_list(name: str, default: Sequence[int]) -> list[int]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return list(default)
    return [int(part) for part in raw.replace(",", " ").split()]


@dataclasses.dataclass(frozen=True)
class Config:
    """Durations and sizes, from ``BENCH_*`` environment variables."""

    duration: float = env_float("BENCH_DURATION", 5.0)
    warmup: float = env_float("BENCH_WARMUP", 1.0)
    connections: tuple[int, ...] = tuple(
        env_list("BENCH_CONNECTIONS", (1, 2, 4, 8, 16))
    )
    # Signed bodies prepared per second of a wrk run (more than any server
    # here can answer; a run that runs out shows up as errors).
    pool_rps: int = env_int("BENCH_POOL_RPS", 6000)
    latency: float = env_float("BENCH_API_LATENCY", 0.1)
    ceiling: float = env_float("BENCH_RATE_CEILING", 300.0)
    # 0: ten seconds' worth at the ceiling
    outbound_messages: int = env_int("BENCH_OUTBOUND_MESSAGES", 0)
    outbound_timeout: float = env_float("BENCH_OUTBOUND_TIMEOUT", 40.0)
    # Fixed send knobs for ``python -m bench.profile worker`` (the bench
    # itself measures the shipped defaults)
    worker_concurrency: int = env_int("BENCH_WORKER_CONCURRENCY", 32)
    worker_batch: int = env_int("BENCH_WORKER_BATCH", 32)
    loop_messages: int = env_int("BENCH_LOOP_MESSAGES", 30)
    idle_messages: int = env_int("BENCH_IDLE_MESSAGES", 40)
    # Open-loop loads on `textwire run` (messages/s), each for load_seconds
    load_rps: tuple[int, ...] = tuple(env_list("BENCH_LOAD_RPS", (30, 100)))
    load_seconds: float = env_float("BENCH_LOAD_SECONDS", 10.0)
    gunicorn_workers: int = env_int("BENCH_GUNICORN_WORKERS", 2)
    gthread_threads: int = env_int("BENCH_GTHREAD_THREADS", 4)
    # A shared machine: redo a measurement during which other processes used
    # more than quiet_limit of the cores (waiting at most quiet_budget s in all)
    quiet_limit: float = env_float("BENCH_QUIET_LIMIT", 0.10)
    quiet_budget: float = env_float("BENCH_QUIET_BUDGET", 180.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(
    url: str, timeout: float = 120.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until ``url`` answers (any HTTP status), or fail with the log of
    ``proc`` (when this module started it): tests/waiting.py does the waiting."""
    from tests.waiting import ANY_ANSWER, wait_for_server

    log = LOGS.get(proc.pid) if proc is not None else None
    wait_for_server(url, proc=proc, log=log, ready=ANY_ANSWER, deadline=timeout)


# The log file of each process Procs started, by pid (for wait_http's report).
LOGS: dict[int, Path] = {}


class Procs:
    """Processes this bench started; each stopped by its own pid, never by name."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log: str,
        cwd: Path = WORK,
    ) -> subprocess.Popen[bytes]:
        WORK.mkdir(parents=True, exist_ok=True)
        path = WORK / log
        out = path.open("ab")
        # Run in bench/results/work: no stray .env is read, and ``bench`` is
        # importable through PYTHONPATH.
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = str(ROOT)
        full_env.update(env or {})
        proc = subprocess.Popen(
            list(args), env=full_env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )
        out.close()
        self.procs.append(proc)
        self.logs.append(path)
        LOGS[proc.pid] = path
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


@contextlib.contextmanager
def processes() -> Iterator[Procs]:
    procs = Procs()
    try:
        yield procs
    finally:
        procs.stop_all()


def clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (and its waited-for children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / clock_ticks()


def children(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(x) for x in (task / "children").read_text().split()]
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and every descendant."""
    pids = [pid]
    for child in children(pid):
        pids += tree(child)
    return pids


def status_kb(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmHWM, VmRSS …)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def tree_cpu(pid: int) -> float:
    total = 0.0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(p)
    return total


def machine() -> dict[str, object]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def reset_pg_database() -> str:
    """Drop and recreate the bench database; return its SQLAlchemy URL."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PG_BENCH_DB}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{PG_BENCH_DB}".replace("postgresql://", "postgresql+psycopg://", 1)


def drop_pg_database() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')


def fresh_sqlite(name: str) -> str:
    WORK.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            (WORK / f"{name}{suffix}").unlink()
    return f"sqlite:///{WORK / name}"


def textwire_env(database_url: str, public_url: str, **extra: str) -> dict[str, str]:
    env = {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": BOT_NUMBER,
        "TEXTWIRE_PUBLIC_URL": public_url,
        "TEXTWIRE_DATABASE_URL": database_url,
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def migrate(database_url: str) -> None:
    env = dict(os.environ)
    env.update(textwire_env(database_url, "http://127.0.0.1:1"))
    subprocess.run(
        [str(VENV_BIN / "textwire"), "db", "upgrade"],
        env=env,
        cwd=WORK,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def cpu_busy() -> tuple[float, float]:
    """``(busy, total)`` jiffies of the whole machine, from /proc/stat."""
    fields = [
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])
    return float(total - idle), float(total)


def postgres_cpu() -> float:
    """CPU seconds of the PostgreSQL server: every ``postgres`` process, and
    through the postmaster's children times, the backends that have exited.
    The whole server: another user of it would count here too."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (entry / "comm").read_text().strip() == "postgres":
                total += cpu_seconds(int(entry.name))
    return total


def _own_cpu() -> float:
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class Meter:
    """CPU used during one measurement, split by who used it.

    ``mine``: the process trees given (servers, workers, emulator) plus this
    process and the children it waited for (wrk); ``postgres``: the whole
    PostgreSQL server (see :func:`postgres_cpu`); ``other``: whatever else
    ran on the machine (other users of a shared machine), as a share of all
    cores: a measurement with a large one was disturbed.
    """

    def __init__(self, trees: Sequence[int], *, postgres: bool = False) -> None:
        self.roots = list(trees)
        self.postgres = postgres
        self.pg0 = postgres_cpu() if postgres else 0.0
        self.mine0 = self._trees_cpu() + _own_cpu()
        self.busy0 = cpu_busy()
        self.t0 = time.monotonic()

    def _trees_cpu(self) -> float:
        return sum(tree_cpu(root) for root in self.roots)

    def stop(self) -> dict[str, float]:
        busy, total = cpu_busy()
        mine = self._trees_cpu() + _own_cpu() - self.mine0
        pg = postgres_cpu() - self.pg0 if self.postgres else 0.0
        jiffies = max(1.0, total - self.busy0[1])
        used = (busy - self.busy0[0]) / clock_ticks()
        cores = jiffies / clock_ticks()  # core-seconds that passed
        return {
            "seconds": time.monotonic() - self.t0,
            "machine_busy": (busy - self.busy0[0]) / jiffies,
            "mine_cpu_s": mine,
            "postgres_cpu_s": pg,
            "other_share": max(0.0, used - mine - pg) / cores,
        }


def other_load(seconds: float = 2.0) -> float:
    """Share of all cores busy with something else while this bench waits."""
    meter = Meter([], postgres=False)
    time.sleep(seconds)
    return meter.stop()["machine_busy"]


def wait_quiet(limit: float, max_wait: float) -> float:
    """Wait (up to ``max_wait`` seconds) until the machine is quieter than
    ``limit`` (share of all cores); return the last reading."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = other_load()
        if busy <= limit or time.monotonic() >= deadline:
            return busy
        print(
            f"bench: machine {100 * busy:.0f} % busy with other work; waiting",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(8)


class Quiet:
    """Redo a measurement that other work on the machine disturbed.

    A measurement whose ``other_load_share`` is above ``limit`` is repeated
    (at most ``retries`` times) once the machine is quiet again; the least
    disturbed result is kept. Waiting is bounded by ``budget`` seconds over
    the whole run.
    """

    def __init__(self, limit: float, budget: float, retries: int = 2) -> None:
        self.limit = limit
        self.budget = budget
        self.retries = retries
        self.redone = 0

    def measure(self, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        best = run()
        tries = 0
        while (
            best["other_load_share"] > self.limit
            and tries < self.retries
            and self.budget > 0
        ):
            t0 = time.monotonic()
            wait_quiet(self.limit, min(60.0, self.budget))
            self.budget -= time.monotonic() - t0
            again = run()
            tries += 1
            self.redone += 1
            if again["other_load_share"] < best["other_load_share"]:
                best = again
        best["redone"] = tries
        return best


def source_state() -> dict[str, object]:
    """The commit measured and whether the working tree differs (read-only git)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    changed = [line for line in git("status", "--porcelain").splitlines() if line]
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_paths": len(changed),
    }

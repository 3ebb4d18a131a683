"""The Markdown report of one ``make bench`` run, from its JSON results."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

PASS, FAIL, NA = "pass", "**FAIL**", "—"


def _n(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def _ms(value: float) -> str:
    return f"{_n(value, 1)} ms"


def _verdict(ok: bool) -> str:
    return PASS if ok else FAIL


Row = tuple[str, str, str, str, str, str]


def inbound_rows(inbound: dict[str, Any]) -> list[Row]:
    """Req/s and p99 at the most connections (wrk -c16) against the quickstart
    at the same load, and the peaks of the sweeps."""
    rows: list[Row] = []
    for worker_class, entry in inbound.items():
        base = entry["baseline"]
        server = f"gunicorn -w 2 {worker_class}"
        for database, name in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
            tw = entry[database]
            most = tw["at_most_connections"]
            base_most = next(
                x for x in base["levels"] if x["connections"] == most["connections"]
            )
            ratio = tw["ratio_at_most_connections"]
            conns = most["connections"]
            rows.append(
                (
                    f"Inbound req/s, {name}, {server}, wrk -c{conns}",
                    _n(most["rps"]),
                    f"{_n(base_most['rps'])} (quickstart app)",
                    f"{ratio:.2f}×",
                    "≥ 0.5× (stretch 0.8×)",
                    _verdict(ratio >= 0.5),
                )
            )
            rows.append(
                (
                    f"Inbound p99 / non-2xx, {name}, {server}, wrk -c{conns}",
                    f"{_ms(most['p99_ms'])} / {most['errors']}",
                    f"{_ms(base_most['p99_ms'])} / {base_most['errors']}",
                    NA,
                    "< 50 ms / 0",
                    _verdict(most["p99_ms"] < 50 and most["errors"] == 0),
                )
            )
            rows.append(
                (
                    f"Inbound req/s, peak of the sweep, {name}, {server}",
                    _n(tw["peak_rps"]),
                    f"{_n(base['peak_rps'])}",
                    f"{tw['ratio_peak_rps']:.2f}×",
                    NA,
                    NA,
                )
            )
    return rows


def slow_rows(slow: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    base = slow["quickstart"]
    floor = slow.get("floor")
    n = slow["webhooks"]
    for key, name in (
        ("sqlite", "SQLite, textwire run"),
        ("postgresql", "PostgreSQL, 2 workers"),
    ):
        tw = slow[key]
        # Replies and duplicates count in every burst, not the median one only.
        replies = tw.get("bursts_replies", [tw["replies"]])
        ok = (
            tw["non_200"] == 0
            and tw["answer_p99_ms"] < 100
            and all(r == n for r in replies)
            and tw.get("bursts_duplicates", tw["duplicates"]) == 0
            and tw["all_replies_after_s"] < 5
        )
        rows.append(
            (
                f"Slow bot (1 s handler), {n} webhooks at once, {name}: webhook "
                "p99 / all replies sent after / replies (duplicates)",
                f"{_ms(tw['answer_p99_ms'])} / {_n(tw['all_replies_after_s'], 2)} s / "
                f"{tw['replies']} ({tw['duplicates']})",
                f"{_ms(base['answer_p99_ms'])} / {_n(base['all_replies_after_s'], 2)} s"
                f" / {n - base['over_15s']} within 15 s (quickstart, TwiML)",
                NA,
                f"< 100 ms / < 5 s / {n} (0)",
                _verdict(ok),
            )
        )
        if "bursts_p99_ms" in tw:
            rows.append(
                (
                    f"Slow bot, {name}: webhook p99 of each of the "
                    f"{len(tw['bursts_p99_ms'])} bursts (the median one above) / "
                    "duplicates in all",
                    " / ".join(_ms(v) for v in tw["bursts_p99_ms"])
                    + f" / {tw['bursts_duplicates']}",
                    NA,
                    NA,
                    NA,
                    NA,
                )
            )
    if floor is not None:
        rows.append(
            (
                f"Floor: {n} webhooks at once to the quickstart app doing nothing "
                "(waitress 8 threads, same load generator): p99 of each burst",
                NA,
                " / ".join(_ms(v) for v in floor["bursts_p99_ms"]),
                NA,
                NA,
                NA,
            )
        )
    return rows


def outbound_rows(out: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    ceiling = out["ceiling_mps"]
    loop = out["quickstart_loop"]["mps"]
    for run in out["runs"]:
        share, times = run["share_of_ceiling"], run["vs_loop"]
        rows.append(
            (
                f"Outbound msg/s at {1000 * out['latency_s']:.0f} ms API latency, "
                f"{run['label']}, shipped defaults, PostgreSQL (median of "
                f"{len(run.get('all_mps', [1]))} runs: "
                f"{', '.join(_n(x) for x in run.get('all_mps', [run['mps']]))})",
                _n(run["mps"], 1),
                f"ceiling {_n(ceiling)} / quickstart loop {_n(loop, 1)}",
                f"{100 * share:.0f} % / {times:.1f}×",
                "≥ 95 %",
                _verdict(share >= 0.95),
            )
        )
    duplicates = sum(run["duplicates"] for run in out["runs"])
    created = sum(run["created"] for run in out["runs"])
    rows.append(
        (
            f"Duplicate creates at the emulator ({_n(created)} messages, all runs)",
            str(duplicates),
            NA,
            NA,
            "0",
            _verdict(duplicates == 0),
        )
    )
    return rows


def reply_rows(reply: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for layout, name in (
        (reply, "SQLite, textwire run"),
        (reply["postgresql"], "PostgreSQL, 2 workers"),
    ):
        idle = layout["idle"]
        rows.append(
            (
                f"Reply latency p50 / p99, idle, {name} "
                f"({idle['replied']}/{idle['messages']} replies)",
                f"{_ms(idle['p50_ms'])} / {_ms(idle['p99_ms'])}",
                "n/a (quickstart answers in TwiML)",
                NA,
                "< 30 ms / < 100 ms",
                _verdict(idle["p50_ms"] < 30 and idle["p99_ms"] < 100),
            )
        )
        for load in layout["load"]:
            target = load["offered_rps"] >= 100
            ok = load["p50_ms"] < 30 and load["p99_ms"] < 100 and load["non_200"] == 0
            rows.append(
                (
                    f"Reply latency p50 / p99, {_n(load['offered_rps'])} msg/s for "
                    f"{_n(load['seconds'])} s open loop, {name} "
                    f"({load['replied']}/{load['messages']} replies)",
                    f"{_ms(load['p50_ms'])} / {_ms(load['p99_ms'])}",
                    NA,
                    NA,
                    "< 30 ms / < 100 ms" if target else NA,
                    _verdict(ok) if target else NA,
                )
            )
    mem, base_mem = reply["memory"], reply["baseline_memory"]
    rows.append(
        (
            "Peak RSS (VmHWM) of `textwire run`, idle",
            f"{_n(mem['idle']['peak_mb'], 1)} MB",
            f"{_n(base_mem['idle']['peak_mb'], 1)} MB (quickstart app, waitress)",
            f"{mem['idle']['peak_mb'] / base_mem['idle']['peak_mb']:.1f}×",
            "< 150 MB",
            _verdict(mem["idle"]["peak_mb"] < 150),
        )
    )
    rows.append(
        (
            "Peak RSS (VmHWM) of `textwire run`, after the loads",
            f"{_n(mem['after_load']['peak_mb'], 1)} MB",
            f"{_n(base_mem['after_load']['peak_mb'], 1)} MB",
            f"{mem['after_load']['peak_mb'] / base_mem['after_load']['peak_mb']:.1f}×",
            NA,
            NA,
        )
    )
    return rows


def broadcast_rows(b: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """The broadcast figures: import of a big list, sending with replies."""
    rows: list[tuple[str, str, str, str, str, str]] = []
    for entry in b["import"]:
        rows.append(
            (
                f"Broadcast import + preview + queue, {entry['rows']:,} rows, "
                f"{entry['database']}: rows/s / peak RSS",
                f"{_n(entry['rows_per_s'])} / {_n(entry['peak_rss_mb'])} MB",
                NA,
                NA,
                "< 200 MB",
                _verdict(entry["peak_rss_mb"] < 200),
            )
        )
    send = b["send"]
    rows.append(
        (
            f"Broadcast of {send['recipients']:,} at {b['ceiling_mps']:g} seg/s, "
            f"{b['latency_s'] * 1000:.0f} ms API: share of ceiling, duplicates",
            f"{100 * send['share_of_ceiling']:.0f} % / {send['duplicates']}",
            f"ceiling {_n(b['ceiling_mps'])}",
            NA,
            "≥ 95 % / 0",
            _verdict(send["share_of_ceiling"] >= 0.95 and send["duplicates"] == 0),
        )
    )
    rows.append(
        (
            "Reply latency during that broadcast, p50 / p99",
            f"{_ms(send['reply_p50_ms'])} / {_ms(send['reply_p99_ms'])}",
            NA,
            NA,
            NA,
            NA,
        )
    )
    slow = b["slow_sender"]
    rows.append(
        (
            "Reply latency behind a broadcast at 1 segment/s (long code), p50 / p99",
            f"{_ms(slow['reply_p50_ms'])} / {_ms(slow['reply_p99_ms'])}",
            NA,
            NA,
            "p99 < 2 s",
            _verdict(slow["reply_p99_ms"] < 2000),
        )
    )
    return rows


def summary_rows(r: dict[str, Any]) -> list[Row]:
    """The table of figures, for every part that ran."""
    rows: list[Row] = []
    makers = (
        ("inbound", inbound_rows),
        ("slowbot", slow_rows),
        ("outbound", outbound_rows),
        ("reply", reply_rows),
        ("broadcast", broadcast_rows),
    )
    for part, maker in makers:
        if part in r:
            rows += maker(r[part])
    return rows


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"{m['nproc']} cores (`nproc`), {m['cpu_model']}, {m['ram_gib']} GiB RAM, "
        f"Linux {m['kernel']}, Python {m['python']}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}"
    )


def markdown(r: dict[str, Any]) -> str:
    title = "# textwire benchmarks"
    parts = [
        title,
        "",
        f"Run {r['started']} in {r['seconds']:.0f} s with `{r['command']}`.",
        "",
        f"**Machine:** {machine_line(r['machine'])}. The load generators, the "
        "servers, PostgreSQL and the Twilio emulator all share these "
        f"{r['machine']['nproc']} cores.",
        "",
        f"Source: commit {r['source']['commit']}"
        + (
            f" with {r['source']['uncommitted_paths']} uncommitted paths in the "
            "working tree"
            if r["source"]["uncommitted_paths"]
            else ""
        )
        + ". Settings: "
        + ", ".join(f"`{k}={v}`" for k, v in r["settings"].items())
        + ".",
        "",
        "*Others* is the share of the machine used by processes that are not "
        "part of the bench (a shared machine): "
        f"{100 * r['other_load_before']:.0f} % just before the run; a "
        "measurement with a large share was disturbed (measurements above "
        f"{100 * r['settings']['quiet_limit']:.0f} % were redone once the machine "
        f"was quiet again, {r.get('redone_measurements', 0)} times in this run, "
        "keeping the least disturbed).",
        "",
        table(
            ["Figure", "textwire", "Baseline", "Ratio", "Target", "Result"],
            summary_rows(r),
        ),
        "",
        "## Inbound sweeps",
        "",
        "Closed loop, `wrk -t1 -cN`, every request a new signed `help` message. "
        "CPU is per request: the gunicorn processes, and the whole PostgreSQL "
        "server. *wrk CPU* is the load generator's share of one core (it is "
        "not the bottleneck while well below 100 %).",
        "",
    ]
    rows: list[tuple[str, ...]] = []
    for worker_class, entry in r.get("inbound", {}).items():
        for key in ("baseline", "sqlite", "postgresql"):
            sweep = entry[key]
            name = "quickstart" if key == "baseline" else f"textwire {key}"
            for level in sweep["levels"]:
                rows.append(
                    (
                        f"{name}, {worker_class}",
                        str(level["connections"]),
                        _n(level["rps"]),
                        _ms(level["p50_ms"]),
                        _ms(level["p99_ms"]),
                        str(level["errors"]),
                        _n(level["server_cpu_ms_per_req"], 2),
                        _n(level["postgres_cpu_ms_per_req"], 2),
                        f"{100 * level['generator_cpu_share']:.0f} %",
                        f"{100 * level['machine_busy']:.0f} %",
                        f"{100 * level['other_load_share']:.0f} %",
                    )
                )
    parts.append(
        table(
            [
                "Server",
                "Conn.",
                "req/s",
                "p50",
                "p99",
                "Errors",
                "App CPU ms/req",
                "PG CPU ms/req",
                "wrk CPU",
                "Machine busy",
                "Others",
            ],
            rows,
        )
    )
    out = r.get("outbound")
    if out is None:
        return "\n".join(parts)
    parts += [
        "",
        "## Outbound runs",
        "",
        f"Emulator API latency {out['latency_s'] * 1000:.0f} ms, rate limit "
        f"`TEXTWIRE_RATE_LIMIT_MPS={out['ceiling_mps']:g}`; the quickstart loop "
        f"sent {out['quickstart_loop']['messages']} messages in "
        f"{out['quickstart_loop']['seconds']} s.",
        "",
    ]
    rows = []
    for run in out["runs"]:
        cpu = run["cpu_ms_per_msg"]
        rows.append(
            (
                run["label"],
                ", ".join(
                    f"{k.removeprefix('TEXTWIRE_')}={v}"
                    for k, v in run["settings"].items()
                )
                or "defaults",
                f"{run['created']}/{run['queued']}",
                _n(run["mps"], 1),
                str(run["duplicates"]),
                f"{_n(cpu['workers'], 2)} / {_n(cpu['emulator'], 2)} / "
                f"{_n(cpu['postgres'], 2)}",
                f"{100 * run['machine_busy']:.0f} %",
                f"{100 * run['other_load_share']:.0f} %",
            )
        )
    parts.append(
        table(
            [
                "Senders",
                "Settings",
                "Created/queued",
                "msg/s",
                "Duplicates",
                "CPU ms/msg worker / emulator / PG",
                "Machine busy",
                "Others",
            ],
            rows,
        )
    )
    parts.append("")
    return "\n".join(parts)

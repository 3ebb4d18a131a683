"""textwire's Twilio emulator, served for benchmarks, with a stopwatch.

    python -m bench.emulator --port 8100 --latency 0.1 --threads 128

The Messages API is ``textwire.sandbox.api`` unchanged, with
``Faults(latency=...)`` (every API request sleeps that long before it is
answered, as Twilio's ~100 ms would). The simulated carrier is not started:
no status callbacks go back to the app under test, so the only work the
emulator asks of it is the one being measured.

Extra routes for the bench:

* ``GET /bench/creates``: every ``POST …/Messages.json`` as ``[arrival
  epoch seconds, To, outbox id from the StatusCallback or null]``, in
  arrival order (arrival = before the latency sleep); ``?since=N`` gives
  only those after the first N;
* ``GET /bench/messages``: the emulator's own message list (SID, To,
  StatusCallback), to count what was created;
* ``POST /bench/reset``: forget every message.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import Flask, Response, jsonify, request

from bench.common import ACCOUNT_SID, AUTH_TOKEN, BOT_NUMBER
from textwire.sandbox.api import Faults, create_api_blueprint
from textwire.sandbox.carrier import Carrier
from textwire.sandbox.state import EmulatorState


def outbox_id(status_callback: str | None) -> int | None:
    if not status_callback:
        return None
    values = parse_qs(urlsplit(status_callback).query).get("outbox")
    return int(values[0]) if values else None


def create_app(latency: float, base_url: str) -> Flask:
    state = EmulatorState(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
    state.add_number(BOT_NUMBER, "bench")
    carrier = Carrier(state, base_url=base_url)  # never started: no callbacks
    app = Flask("bench.emulator")
    creates: list[tuple[float, str, int | None]] = []
    lock = threading.Lock()

    @app.before_request
    def stopwatch() -> None:
        if request.method == "POST" and request.path.endswith("/Messages.json"):
            arrived = time.time()
            form = request.form
            entry = (arrived, form.get("To", ""), outbox_id(form.get("StatusCallback")))
            with lock:
                creates.append(entry)

    @app.get("/bench/creates")
    def list_creates() -> Response:
        # ?since=N: only the creates after the first N (a poll stays cheap).
        since = request.args.get("since", default=0, type=int)
        with lock:
            return jsonify(creates[since:])

    @app.get("/bench/messages")
    def list_messages() -> Response:
        rows: list[dict[str, Any]] = [
            {"sid": m.sid, "to": m.to, "outbox": outbox_id(m.status_callback)}
            for m in state.all_messages()
        ]
        return jsonify(rows)

    @app.post("/bench/reset")
    def reset() -> Response:
        with lock:
            creates.clear()
        with state.lock:
            state.messages.clear()
        return jsonify(ok=True)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(ok=True)

    app.register_blueprint(
        create_api_blueprint(state, carrier, Faults(latency=latency))
    )
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=128)
    args = parser.parse_args()

    import logging

    import waitress

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    base = f"http://127.0.0.1:{args.port}"
    waitress.serve(
        create_app(args.latency, base),
        host="127.0.0.1",
        port=args.port,
        threads=args.threads,
        ident="bench-emulator",
        connection_limit=1000,
        backlog=1024,
    )


if __name__ == "__main__":
    main()

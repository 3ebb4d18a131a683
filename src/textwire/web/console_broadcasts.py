"""The console's broadcast and scheduled-message pages (routes of the
``textwire_console`` blueprint):

=============================================  =================================
``GET  /console/broadcasts``                   every broadcast, its progress
``GET  /console/broadcasts/<id>``              one broadcast, its recent rows
``POST /console/broadcasts/<id>/pause``        stop claiming its rows
``POST /console/broadcasts/<id>/resume``       go on (a running worker sends)
``POST /console/broadcasts/<id>/cancel``       cancel every row not yet sent
``GET  /console/scheduled``                    messages queued for later
``POST /console/scheduled/<id>/cancel``        cancel one (unless on its way)
=============================================  =================================

Every action goes through :mod:`textwire.operator` (the rules of ``textwire
broadcast pause|resume|cancel`` and ``textwire scheduled cancel``, plus one
audit line); the counts are :meth:`SqlBroadcasts.progress`'s, as ``textwire
broadcast status`` shows them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import abort, jsonify, redirect, render_template, request, url_for

from textwire import operator
from textwire.broadcast.control import Change
from textwire.errors import BroadcastError
from textwire.web.console import _operator, _wants_json, bp
from textwire.web.console_present import (
    broadcast_row_state,
    broadcast_summary,
    local_times,
)
from textwire.web.runtime import current_runtime

__all__: list[str] = []

# The list shows the newest ones; older ones are one URL away.
MAX_LISTED = 50
MAX_SCHEDULED = 200
ROW_FILTERS = ("queued", "sending", "sent", "failed", "cancelled")


def _fragment_or(page: str, fragment: str) -> str:
    return fragment if request.args.get("fragment") else page


@bp.get("/broadcasts")
def broadcasts() -> str:
    rt = current_runtime()
    now = rt.clock()
    everything = rt.store.broadcasts.all()
    shown = []
    for b in everything[:MAX_LISTED]:
        progress = rt.store.broadcasts.progress(b["id"], now)
        shown.append((b, progress, broadcast_summary(b, progress)))
    return render_template(
        _fragment_or("console/broadcasts.html", "console/_broadcasts.html"),
        broadcasts=shown,
        more=len(everything) - len(shown),
        now=now,
    )


@bp.get("/broadcasts/<int:broadcast_id>")
def broadcast(broadcast_id: int) -> str:
    rt = current_runtime()
    now = rt.clock()
    try:
        b = rt.store.broadcasts.get(broadcast_id)
    except BroadcastError as exc:
        abort(404, str(exc))
    status = request.args.get("rows")
    status = status if status in ROW_FILTERS else None
    progress = rt.store.broadcasts.progress(broadcast_id, now)
    rows = rt.store.broadcasts.recent(broadcast_id, status=status)
    return render_template(
        _fragment_or("console/broadcast.html", "console/_broadcast.html"),
        b=b,
        p=progress,
        summary=broadcast_summary(b, progress),
        rows=[(row, broadcast_row_state(row, now)) for row in rows],
        rows_filter=status,
        row_filters=ROW_FILTERS,
        now=now,
    )


def _broadcast_done(broadcast_id: int, notice: str, status: int = 200) -> Any:
    if _wants_json():
        return jsonify(ok=status < 400, message=notice), status
    if request.form.get("back") == "list":
        target = url_for("textwire_console.broadcasts", notice=notice)
    else:
        target = url_for(
            "textwire_console.broadcast", broadcast_id=broadcast_id, notice=notice
        )
    return redirect(target, code=303)


_Action = Callable[..., Change]


def _act(broadcast_id: int, action: _Action) -> Any:
    """Run one of the operator's broadcast actions: 200 when it changed
    something, 409 (with why) when its state does not allow it or it was
    in that state already, 404 when there is no such broadcast."""
    rt = current_runtime()
    try:
        change = action(rt.store, broadcast_id, operator=_operator(), now=rt.clock())
    except BroadcastError as exc:
        return _broadcast_done(
            broadcast_id, str(exc), 409 if _exists(broadcast_id) else 404
        )
    if change.changed and rt.runtime.worker is not None:
        rt.runtime.worker.wake_sender()
    return _broadcast_done(broadcast_id, change.message, 200 if change.changed else 409)


def _exists(broadcast_id: int) -> bool:
    try:
        current_runtime().store.broadcasts.get(broadcast_id)
    except BroadcastError:
        return False
    return True


@bp.post("/broadcasts/<int:broadcast_id>/pause")
def pause_broadcast(broadcast_id: int) -> Any:
    return _act(broadcast_id, operator.pause_broadcast)


@bp.post("/broadcasts/<int:broadcast_id>/resume")
def resume_broadcast(broadcast_id: int) -> Any:
    return _act(broadcast_id, operator.resume_broadcast)


@bp.post("/broadcasts/<int:broadcast_id>/cancel")
def cancel_broadcast(broadcast_id: int) -> Any:
    return _act(broadcast_id, operator.cancel_broadcast)


# -- scheduled messages ----------------------------------------------------------


@bp.get("/scheduled")
def scheduled() -> str:
    rt = current_runtime()
    now = rt.clock()
    return render_template(
        _fragment_or("console/scheduled.html", "console/_scheduled.html"),
        rows=rt.store.outbox.scheduled(now, limit=MAX_SCHEDULED),
        limit=MAX_SCHEDULED,
        local_times=local_times,
        now=now,
    )


@bp.post("/scheduled/<int:outbox_id>/cancel")
def cancel_scheduled(outbox_id: int) -> Any:
    rt = current_runtime()
    result = operator.cancel_scheduled(
        rt.store, outbox_id, operator=_operator(), now=rt.clock()
    )
    if result.cancelled:
        notice, status = f"Message #{outbox_id} cancelled: it will not be sent.", 200
    elif result.state is None:
        notice, status = f"No message #{outbox_id}.", 404
    else:
        notice, status = f"Message #{outbox_id} not cancelled: {result.reason}.", 409
    if _wants_json():
        return jsonify(ok=status < 400, message=notice, state=result.state), status
    return redirect(url_for("textwire_console.scheduled", notice=notice), code=303)

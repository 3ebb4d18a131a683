"""Blueprint ``textwire_console``: the operator console at ``/console``.

Server-rendered pages (Jinja, autoescaped; plain CSS; a little JavaScript for
live updates over server-sent events and the segment counter), behind a
password:

=========================================  ====================================
``GET  /console/``                         conversations (``?q=`` searches)
``GET  /console/c/<id>``                   one conversation
``POST /console/c/<id>/reply``             reply as a person
``POST /console/c/<id>/handoff``           hand to a person
``POST /console/c/<id>/release``           back to the bot
``GET  /console/outbox``                   failed, retrying and held rows
``POST /console/outbox/<id>/retry``        retry (reconciled first)
``POST /console/outbox/<id>/cancel``       cancel a queued row
``GET  /console/broadcasts`` …             broadcasts and scheduled messages
                                           (:mod:`.console_broadcasts`)
``GET  /console/media/<message>/<i>``      an inbound file (copy, or Twilio's)
``GET  /console/events``                   server-sent events: "changed"
``GET  /console/api/segments``             the segment counter
=========================================  ====================================

On when ``TEXTWIRE_CONSOLE_PASSWORD`` (or ``…_HASH``) is set; always in the
sandbox. Broadcast pages join the navigation when an endpoint named
``textwire_console.broadcasts`` is registered (the module at the end of
this one registers it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

from textwire import operator
from textwire.errors import (
    ConfigError,
    InvalidMessage,
    MediaFetchError,
    RecipientOptedOut,
    StorageError,
)
from textwire.mediastore import TwilioMediaSource, media_source_for
from textwire.messages import MAX_BODY_CHARS, MAX_MEDIA, segment_info
from textwire.storage.console import ContactInfo
from textwire.storage.sql import SqlStore
from textwire.web.console_auth import (
    COOKIE,
    LOGIN_TRIES_PER_MINUTE,
    ConsoleAuth,
    Session,
    clean_name,
)
from textwire.web.console_present import (
    INLINE_TYPES,
    delivery,
    display_number,
    outbox_state,
    search,
)
from textwire.web.runtime import Mount, current_runtime

__all__ = ["EXTENSION_KEY", "ConsoleConfig", "bp", "init_console"]

logger = logging.getLogger("textwire.web")

EXTENSION_KEY = "textwire_console"

bp = Blueprint(
    "textwire_console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

# Live views whose counts also move with the clock alone, and how often
# (seconds) their pages look again even when no row changed.
_CLOCK_VIEWS = frozenset({"broadcasts", "scheduled"})
_CLOCK_TICK = 10

# Views a visitor reaches without logging in.
_OPEN = {"textwire_console.login", "textwire_console.static"}

_CSP = (
    "default-src 'self'; img-src 'self' https: data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


@dataclasses.dataclass
class ConsoleConfig:
    """The console of one app: its sessions, where inbound media come from,
    and how the live pages poll.

    Attributes:
        auth: password, cookie and CSRF.
        media: fetches inbound media (and keeps copies).
        poll: seconds between two looks for changes, per open page.
        heartbeat: seconds between keep-alive comments on a quiet stream.
        stream_seconds: an event stream ends after this long (the browser
            reconnects by itself); each open one holds a server thread.
        max_streams: open event streams per process. Each holds a server
            thread (a whole process on a sync gunicorn worker), and the
            webhooks need threads more: past this, a page is told 503 and
            polls every few seconds instead.
    """

    auth: ConsoleAuth
    media: TwilioMediaSource
    poll: float = 1.0
    heartbeat: float = 15.0
    stream_seconds: float = 300.0
    max_streams: int = 4
    _slots: threading.BoundedSemaphore | None = dataclasses.field(
        default=None, init=False, repr=False
    )

    def take_stream(self) -> bool:
        """Take a stream slot; False when ``max_streams`` are open."""
        if self._slots is None:
            self._slots = threading.BoundedSemaphore(self.max_streams)
        return self._slots.acquire(blocking=False)

    def give_stream(self) -> None:
        if self._slots is not None:
            self._slots.release()

    def close_streams(self) -> None:
        """End every open event stream (each holds a server thread)."""
        self.auth.stopping.set()


def init_console(app: Flask, mount: Mount) -> ConsoleConfig:
    """Serve the console on ``app`` for ``mount``'s runtime.

    Raises:
        ConfigError: no console password (or hash) is set.
    """
    settings = mount.settings
    if not (settings.console_password or settings.console_password_hash):
        raise ConfigError(
            "the console is on but no password is set: set "
            "TEXTWIRE_CONSOLE_PASSWORD_HASH or TEXTWIRE_CONSOLE_PASSWORD"
        )
    config = ConsoleConfig(auth=ConsoleAuth(settings), media=media_source_for(settings))
    app.extensions[EXTENSION_KEY] = config
    app.register_blueprint(bp)
    logger.info("operator console at %s/console", settings.public_url or "")
    return config


def _config() -> ConsoleConfig:
    config: ConsoleConfig = current_app.extensions[EXTENSION_KEY]
    return config


def _session() -> Session:
    session: Session = g.console_session
    return session


def _operator() -> str:
    return _session().operator or "?"


# -- every request ---------------------------------------------------------------


@bp.before_request
def _authenticate() -> WerkzeugResponse | None:
    auth = _config().auth
    session = auth.load(request.cookies.get(COOKIE))
    g.console_new_session = session is None
    g.console_session = session or auth.new_session()
    if request.method == "POST":
        token = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token")
        if not auth.csrf_ok(session, token):
            abort(403, "missing or wrong CSRF token: reload the page")
    if request.endpoint in _OPEN or g.console_session.operator:
        return None
    if request.method != "GET" or request.endpoint in (
        "textwire_console.events",
        "textwire_console.media",
        "textwire_console.segments",
    ):
        abort(401, "log in to the console first")
    return redirect(
        url_for("textwire_console.login", next=request.full_path.rstrip("?"))
    )


@bp.after_request
def _headers(response: Response) -> Response:
    if g.get("console_new_session"):
        auth = _config().auth
        response.set_cookie(COOKIE, auth.dump(_session()), **auth.cookie_options())
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "textwire_console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int]:
    code = exc.code or 500
    return (
        render_template(
            "console/error.html", code=code, name=exc.name, detail=exc.description
        ),
        code,
    )


@bp.errorhandler(StorageError)
def _storage_error(exc: StorageError) -> tuple[str, int]:
    logger.error("console: %s", exc)
    return (
        render_template(
            "console/error.html",
            code=503,
            name="Database unavailable",
            detail="textwire's database did not answer; try again shortly.",
        ),
        503,
    )


@bp.app_template_filter("number")
def _number_filter(number: str) -> str:
    return display_number(number)


@bp.app_template_filter("when")
def _when_filter(when: datetime | None) -> str:
    if when is None:
        return ""
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


@bp.context_processor
def _context() -> dict[str, Any]:
    session: Session | None = g.get("console_session")
    return {
        "csrf_token": session.csrf if session else "",
        "operator": session.operator if session else None,
        "has_broadcasts": "textwire_console.broadcasts" in current_app.view_functions,
        "limits": {"body": MAX_BODY_CHARS, "media": MAX_MEDIA},
    }


# -- logging in --------------------------------------------------------------------


def _address() -> str:
    # Behind a proxy, put ProxyFix in front so remote_addr is the client's.
    return request.remote_addr or "unknown"


@bp.route("/login", methods=["GET", "POST"])
def login() -> WerkzeugResponse | tuple[str, int] | str:
    if request.method == "GET":
        return render_template("console/login.html", next=_next(), error=None)
    rt = current_runtime()
    address = _address()
    wait = rt.store.console.login_wait(
        address, time.time(), per_minute=LOGIN_TRIES_PER_MINUTE
    )
    if wait > 0:
        operator.audit.warning(
            "console login refused (too many tries) from %s", address
        )
        error = f"Too many tries from your address: wait {int(wait) + 1} s."
        return render_template("console/login.html", next=_next(), error=error), 429
    name = clean_name(request.form.get("name", ""))
    if not _config().auth.check_password(request.form.get("password", "")) or not name:
        rt.store.console.login_failed(
            address, time.time(), per_minute=LOGIN_TRIES_PER_MINUTE
        )
        operator.audit.warning("console login failed from %s", address)
        error = "Wrong password." if name else "Give your name and the password."
        return render_template("console/login.html", next=_next(), error=error), 401
    operator.audit.info("operator=%r logged in from %s", name, address)
    g.console_session = _config().auth.new_session(name)
    g.console_new_session = True
    return redirect(_next(), code=303)


def _next() -> str:
    target = request.values.get("next", "")
    # Only back into the console: never an open redirect.
    if target.startswith("/console/") and not target.startswith("/console//"):
        return target
    return url_for("textwire_console.index")


@bp.post("/logout")
def logout() -> WerkzeugResponse:
    operator.audit.info("operator=%r logged out", _operator())
    g.console_session = _config().auth.new_session()
    g.console_new_session = True
    return redirect(url_for("textwire_console.login"), code=303)


# -- conversations -------------------------------------------------------------


@bp.get("/")
def index() -> str:
    rt = current_runtime()
    query = request.args.get("q", "")
    wanted = search(query, rt.settings.default_region)
    now = rt.clock()
    conversations = rt.store.console.conversations(
        now,
        phones=[wanted.phone] if wanted.phone else None,
        digits=wanted.digits,
        text=wanted.text,
    )
    template = (
        "console/_conversations.html"
        if request.args.get("fragment")
        else "console/index.html"
    )
    return render_template(
        template,
        conversations=conversations,
        query=query,
        searched=wanted,
        now=now,
        timeout=rt.settings.handoff_timeout,
    )


def _contact_or_404(contact_id: int) -> ContactInfo:
    contact = current_runtime().store.console.contact(contact_id)
    if contact is None:
        abort(404, "no such contact")
    return contact


@bp.get("/c/<int:contact_id>")
def conversation(contact_id: int) -> str:
    rt = current_runtime()
    contact = _contact_or_404(contact_id)
    messages = rt.store.console.thread(contact.phone)
    inbound = [m.id for m in messages if m.direction == "inbound"]
    if inbound:
        # The operator is looking at it: read up to the newest.
        rt.store.console.mark_read(contact.id, max(inbound))
    now = rt.clock()
    shown = [(m, delivery(m, now)) for m in messages]
    template = (
        "console/_thread.html"
        if request.args.get("fragment")
        else "console/thread.html"
    )
    return render_template(
        template,
        contact=contact,
        messages=shown,
        now=now,
        inline_types=INLINE_TYPES,
        expired=contact.handoff is not None
        and contact.handoff.expired(now, rt.settings.handoff_timeout),
    )


def _wants_json() -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _done(contact_id: int, notice: str = "", status: int = 200) -> Any:
    if _wants_json():
        return jsonify(ok=status < 400, message=notice), status
    target = url_for(
        "textwire_console.conversation", contact_id=contact_id, notice=notice or None
    )
    return redirect(target, code=303)


@bp.post("/c/<int:contact_id>/reply")
def reply(contact_id: int) -> Any:
    rt = current_runtime()
    contact = _contact_or_404(contact_id)
    body = request.form.get("body", "")
    media = [u.strip() for u in request.form.get("media", "").splitlines() if u.strip()]
    if not body.strip() and not media:
        return _done(contact_id, "Type a message or give a media URL.", 400)
    try:
        ids = operator.operator_reply(
            rt.store,
            contact=contact.phone,
            body=body,
            media=media,
            settings=rt.settings,
            operator=_operator(),
            now=rt.clock(),
        )
    except (InvalidMessage, RecipientOptedOut, ConfigError) as exc:
        return _done(contact_id, str(exc), 400)
    if rt.runtime.worker is not None:
        rt.runtime.worker.wake_sender()
    return _done(contact_id, f"Queued ({len(ids)} message{'s' * (len(ids) > 1)}).")


@bp.post("/c/<int:contact_id>/handoff")
def handoff(contact_id: int) -> Any:
    rt = current_runtime()
    contact = _contact_or_404(contact_id)
    operator.hand_off(
        rt.store,
        contact=contact.phone,
        operator=_operator(),
        note=request.form.get("note", ""),
        now=rt.clock(),
    )
    return _done(contact_id, "With a person now: the bot stays silent.")


@bp.post("/c/<int:contact_id>/release")
def release(contact_id: int) -> Any:
    rt = current_runtime()
    contact = _contact_or_404(contact_id)
    operator.hand_back(
        rt.store, contact=contact.phone, operator=_operator(), now=rt.clock()
    )
    return _done(contact_id, "Back to the bot.")


# -- the outbox ------------------------------------------------------------------


@bp.get("/outbox")
def outbox() -> str:
    rt = current_runtime()
    now = rt.clock()
    entries = [(e, outbox_state(e, now)) for e in rt.store.console.outbox()]
    template = (
        "console/_outbox.html"
        if request.args.get("fragment")
        else "console/outbox.html"
    )
    return render_template(template, entries=entries, now=now)


def _outbox_done(notice: str, status: int = 200) -> Any:
    if _wants_json():
        return jsonify(ok=status < 400, message=notice), status
    return redirect(url_for("textwire_console.outbox", notice=notice), code=303)


@bp.post("/outbox/<int:outbox_id>/retry")
def retry(outbox_id: int) -> Any:
    rt = current_runtime()
    if not operator.retry_message(
        rt.store, outbox_id, operator=_operator(), now=rt.clock()
    ):
        return _outbox_done(f"Row {outbox_id} is not failed (any more).", 409)
    if rt.runtime.worker is not None:
        rt.runtime.worker.wake_sender()
    return _outbox_done(
        f"Row {outbox_id}: looked up at Twilio first, sent only if Twilio has no "
        "trace of it."
    )


@bp.post("/outbox/<int:outbox_id>/cancel")
def cancel(outbox_id: int) -> Any:
    rt = current_runtime()
    if not operator.cancel_message(
        rt.store, outbox_id, operator=_operator(), now=rt.clock()
    ):
        return _outbox_done(
            f"Row {outbox_id} is not queued any more (being sent, or done).", 409
        )
    return _outbox_done(f"Row {outbox_id} cancelled.")


# -- media, live updates, the counter ----------------------------------------------


@bp.get("/media/<int:message_id>/<int:index>")
def media(message_id: int, index: int) -> Response:
    """An inbound file: the kept copy, else fetched from Twilio with the
    account's credentials (the browser never sees them)."""
    rt = current_runtime()
    message = rt.store.console.message(message_id)
    if message is None or message.direction != "inbound" or not message.sid:
        abort(404, "no such message")
    if not 0 <= index < len(message.media):
        abort(404, "no such file")
    url = str(message.media[index].get("url") or "")
    try:
        fetched = _config().media.get(message.sid, index, url)
    except MediaFetchError as exc:
        abort(502 if exc.status != 404 else 404, str(exc))
    response = Response(fetched.data, content_type=fetched.content_type)
    inline = fetched.content_type in INLINE_TYPES
    response.headers["Content-Disposition"] = (
        "inline" if inline else f'attachment; filename="{message.sid}-{index}"'
    )
    # A file from outside is never run as a page of the console.
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


@bp.get("/events")
def events() -> Response:
    """``event: changed`` whenever what the page shows changed."""
    rt = current_runtime()
    view = request.args.get("view", "list")
    phone = None
    if view == "thread":
        contact = _contact_or_404(request.args.get("contact", 0, type=int))
        phone = contact.phone
    disconnected: Callable[[], bool] | None = request.environ.get(
        "waitress.client_disconnected"
    )
    config = _config()
    if not config.take_stream():
        # EventSource gives up on a 503; the page polls instead.
        return Response(
            "too many live pages open: polling instead\n",
            status=503,
            headers={"Retry-After": "5"},
            content_type="text/plain",
        )
    stream = _Held(
        _stream(config, _version_of(rt.store, view, phone), disconnected),
        config.give_stream,
    )
    return Response(
        stream,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _version_of(store: SqlStore, view: str, phone: str | None) -> Callable[[], str]:
    """What the stream of ``view`` compares from one look to the next."""

    def version() -> str:
        token = store.console.version(view, phone)
        if view in _CLOCK_VIEWS:
            # Held for quiet hours, a send time come: no row says so at once.
            token += f"@{int(time.time() // _CLOCK_TICK)}"
        return token

    return version


class _Held:
    """An event stream that gives its slot back when the server closes it
    (the page went away, the stream ended, or it was never read at all)."""

    def __init__(self, chunks: Iterator[str], release: Callable[[], None]) -> None:
        self._chunks = chunks
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> _Held:
        return self

    def __next__(self) -> str:
        return next(self._chunks)

    def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            try:
                self._chunks.close()  # type: ignore[attr-defined]
            finally:
                release()


def _stream(
    config: ConsoleConfig,
    version: Callable[[], str],
    disconnected: Callable[[], bool] | None,
) -> Iterator[str]:
    yield "retry: 2000\n: connected\n\n"
    stopping = config.auth.stopping
    started = last_write = time.monotonic()
    try:
        seen = version()
    except StorageError:
        seen = ""
    while not stopping.wait(config.poll):
        if time.monotonic() - started >= config.stream_seconds:
            return
        if disconnected is not None and disconnected():
            return
        try:
            now = version()
        except StorageError:
            continue  # the database is back soon; the page keeps its view
        if now != seen:
            seen = now
            yield f"event: changed\ndata: {json.dumps({'at': time.time()})}\n\n"
            last_write = time.monotonic()
        elif time.monotonic() - last_write >= config.heartbeat:
            yield ": heartbeat\n\n"
            last_write = time.monotonic()


@bp.get("/api/segments")
def segments() -> Response:
    body = request.args.get("body", "")
    info = segment_info(body)
    length = len(body.encode("utf-16-le")) // 2
    return jsonify(
        encoding=info.encoding,
        characters=info.characters,
        segments=info.segments,
        per_segment=info.per_segment,
        unicode_chars=list(info.unicode_chars),
        too_long=length > MAX_BODY_CHARS,
        limit=MAX_BODY_CHARS,
    )


# The broadcast and scheduled pages: routes of this blueprint, in a module of
# their own (imported last: it uses the helpers above).
from textwire.web import console_broadcasts  # noqa: E402, F401

"""Blueprint ``sandbox_page``: the phone page at ``/`` and the JSON it runs on.

The page is plain HTML, CSS and JavaScript (``templates/sandbox/``,
``static/sandbox/``), no build step and nothing fetched from elsewhere. It
talks to these endpoints, all JSON except the event stream:

=====================================================  ==========================
``GET  /``                                             the page
``GET  /sandbox/api/config``                           account, number, phones
``GET  /sandbox/api/phones``                           the virtual phones
``GET  /sandbox/api/phones/<number>/messages``         one phone's thread
``POST /sandbox/api/phones/<number>/messages``         the phone texts the number
                                                       (``body``, ``media`` files)
``GET  /sandbox/api/phones/<number>/scheduled``       the bot's messages to it
                                                       that wait ("scheduled for")
``POST /sandbox/api/broadcasts``                       a broadcast from a CSV
                                                       (``csv``, ``body``, ``at``;
                                                       ``send=1`` queues it)
``GET  /sandbox/api/segments?body=...``                encoding and segment count
``GET  /sandbox/api/events``                           server-sent events
=====================================================  ==========================

Bad input to the JSON endpoints is answered ``400 {"error": "..."}``.

The page is the virtual phones' side of the emulator (it also runs with
``--emulator-only``, with no bot at all), so it belongs to the emulator proper
and imports nothing from textwire's core: its segment counter is the one Twilio
applies (:func:`textwire.sandbox.rules.segments`), as is every limit it shows.
Whoever assembles the sandbox may hand it richer advice on error codes
(``PageConfig.explain``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import phonenumbers
from flask import Blueprint, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from textwire.sandbox import rules
from textwire.sandbox.carrier import Carrier
from textwire.sandbox.state import EmMessage, EmulatorState, VirtualPhone

__all__ = [
    "HEARTBEAT_SECONDS",
    "MAX_PICTURE_BYTES",
    "STREAM_SECONDS",
    "PageConfig",
    "create_page_blueprint",
    "sniff_image",
]

MAX_PICTURE_BYTES = rules.MAX_MEDIA_BYTES
"""Largest total size of the pictures in one message (Twilio's MMS limit)."""

MAX_CSV_BYTES = 2 * 1024 * 1024
"""Largest CSV file the page takes for a broadcast (the CLI takes any size)."""

BROADCAST_FOLDER = Path(".textwire") / "broadcasts"
"""Where the page keeps uploaded lists (an import resumes from its file)."""

HEARTBEAT_SECONDS = 15.0
"""A comment line this often keeps proxies and the browser from giving up."""

STREAM_SECONDS = 300.0
"""An event stream ends after this long; ``EventSource`` reconnects by itself.
Each open stream holds a server thread, so none may live for ever."""

_POLL_SECONDS = 1.0  # how often a stream looks for a gone client
_CLOSE: dict[str, Any] = {"type": "_close"}  # put in a stream's queue to end it

COUNTRY_NAMES = {
    "AU": "Australia",
    "BR": "Brazil",
    "CA": "Canada",
    "DE": "Germany",
    "ES": "Spain",
    "FR": "France",
    "GB": "United Kingdom",
    "IN": "India",
    "IT": "Italy",
    "JP": "Japan",
    "MX": "Mexico",
    "NL": "Netherlands",
    "US": "United States",
}

_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)

# How far along a message is; a stale copy never replaces a fresher one.
STATUS_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "receiving": 3,
    "received": 4,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "read": 5,
    "canceled": 5,
}


def sniff_image(data: bytes) -> str | None:
    """The content type of a PNG, JPEG, GIF or WebP picture, else ``None``.

    Judged from the bytes, not from the name or the browser's claim.
    """
    for magic, content_type in _IMAGE_SIGNATURES:
        if data.startswith(magic):
            return content_type
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclasses.dataclass
class PageConfig:
    """What the page shows besides the messages.

    Attributes:
        number: the emulator's number (E.164) the phones text.
        url: the sandbox's base URL (the API base URL for a twilio client).
        bot_name: the bot's name, or ``None`` when only the emulator runs.
        stopping: set when the sandbox stops; open event streams end.
        heartbeat: seconds between keep-alive comments on an idle stream.
        stream_seconds: how long one event stream lasts before the browser
            has to reconnect.
        explain: advice on a Twilio error code, shown with the code; Twilio's
            title of the code alone when not given.
        store: the bot's database (its scheduled messages, broadcasts);
            ``None`` when only the emulator runs.
        settings: the bot's settings (a broadcast's sender and region).
    """

    number: str
    url: str
    bot_name: str | None = None
    store: Any = None
    settings: Any = None
    stopping: threading.Event = dataclasses.field(default_factory=threading.Event)
    heartbeat: float = HEARTBEAT_SECONDS
    stream_seconds: float = STREAM_SECONDS
    explain: Callable[[int], str | None] | None = None
    _streams: set[queue.Queue[dict[str, Any]]] = dataclasses.field(
        default_factory=set, init=False, repr=False
    )
    _lock: threading.Lock = dataclasses.field(
        default_factory=threading.Lock, init=False, repr=False
    )

    def track(self, q: queue.Queue[dict[str, Any]]) -> None:
        with self._lock:
            self._streams.add(q)

    def untrack(self, q: queue.Queue[dict[str, Any]]) -> None:
        with self._lock:
            self._streams.discard(q)

    def close_streams(self) -> None:
        """End every open event stream now (each holds a server thread)."""
        self.stopping.set()
        with self._lock:
            streams = list(self._streams)
        for q in streams:
            with contextlib.suppress(queue.Full):
                q.put_nowait(_CLOSE)


class _BadInput(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _error(message: str, status: int = 400) -> tuple[Response, int]:
    return jsonify(error=message), status


def _phone_json(phone: VirtualPhone) -> dict[str, Any]:
    data = dataclasses.asdict(phone)
    data["country_name"] = COUNTRY_NAMES.get(phone.country, phone.country)
    return data


def _international(number: str) -> str:
    """``+14155550100`` as people write it: ``+1 415-555-0100``."""
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return number
    return str(
        phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    )


def _describe_error(
    code: object, explain: Callable[[int], str | None] | None
) -> tuple[str | None, str | None]:
    """(short reason, full advice) for a Twilio error code."""
    if code is None or code == "":
        return None, None
    try:
        number = int(str(code))
    except ValueError:
        return str(code), None
    title = rules.ERROR_TITLES.get(number)
    return title, (explain(number) if explain is not None else title)


class _Page:
    """The views, bound to one sandbox's state, carrier and config."""

    def __init__(
        self, state: EmulatorState, carrier: Carrier, config: PageConfig
    ) -> None:
        self.state = state
        self.carrier = carrier
        self.config = config

    # -- shaping ----------------------------------------------------------------

    def phone_for(self, *addresses: object) -> str | None:
        """The virtual phone a message belongs to (its E.164 key), if any.

        A phone that sends national-format numbers appears in the state under
        its E.164 number or as displayed; both count as the same phone.
        """
        with self.state.lock:
            phones = list(self.state.phones.values())
        for address in addresses:
            for phone in phones:
                if address in (phone.number, phone.display):
                    return phone.number
        return None

    def shape(self, event: dict[str, Any]) -> dict[str, Any]:
        """A message as the page draws it: ``to_event()`` plus its phone and
        the error code explained."""
        shaped = dict(event)
        shaped["phone"] = self.phone_for(event.get("from"), event.get("to"))
        reason, advice = _describe_error(event.get("error_code"), self.config.explain)
        shaped["reason"] = reason or event.get("error_message")
        shaped["advice"] = advice
        shaped["rank"] = STATUS_RANK.get(str(event.get("status")), 0)
        shaped["media"] = [self._page_media(item) for item in event.get("media", [])]
        return shaped

    def _page_media(self, item: dict[str, Any]) -> dict[str, Any]:
        """A phone's own picture is drawn from the page's route: its Twilio
        media URL wants the account's credentials, which a browser lacks."""
        media_sid = str(item.get("url", "")).rstrip("/").rsplit("/", 1)[-1]
        with self.state.lock:
            kept = media_sid in self.state.media_blobs
        if not kept:
            return item
        return {**item, "url": f"/sandbox/api/media/{media_sid}"}

    def media(self, media_sid: str) -> Response | tuple[Response, int]:
        """The bytes of a virtual phone's picture, for the page."""
        with self.state.lock:
            blob = self.state.media_blobs.get(media_sid)
        if blob is None:
            return _error("no such picture", 404)
        data, content_type = blob
        response = Response(data, content_type=content_type)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def thread(self, phone: VirtualPhone) -> list[dict[str, Any]]:
        keys = {phone.number, phone.display}
        with self.state.lock:
            messages = [
                m
                for m in self.state.messages.values()
                if m.from_ in keys or m.to in keys
            ]
        messages.sort(key=lambda m: m.date_created)
        return [self.shape(m.to_event()) for m in messages]

    def config_json(self) -> dict[str, Any]:
        with self.state.lock:
            phones = [_phone_json(p) for p in self.state.phones.values()]
            owned = [n.phone_number for n in self.state.numbers.values()]
            services = list(self.state.services)
        return {
            "account_sid": self.state.account_sid,
            "auth_token": self.state.auth_token,
            "number": self.config.number,
            "number_display": _international(self.config.number),
            "numbers": owned,
            "messaging_services": services,
            "url": self.config.url,
            "api_url": self.config.url,
            "bot": self.config.bot_name,
            "emulator_only": self.config.bot_name is None,
            "broadcasts": self.config.store is not None,
            "phones": phones,
            "limits": {
                "body_chars": rules.MAX_BODY_UNITS,
                "media": rules.MAX_MEDIA,
                "picture_bytes": MAX_PICTURE_BYTES,
            },
        }

    # -- input ------------------------------------------------------------------

    def find_phone(self, raw: str) -> VirtualPhone:
        with self.state.lock:
            phone = self.state.phones.get(raw)
            if phone is None:
                number = rules.read_number(raw)
                if number is None:
                    raise _BadInput(f"{raw!r} is not a phone number")
                phone = self.state.phones.get(number)
        if phone is None:
            raise _BadInput(f"no virtual phone {raw}")
        return phone

    def read_pictures(self) -> list[tuple[bytes, str]]:
        files = [f for f in request.files.getlist("media") if f.filename or f.mimetype]
        if len(files) > rules.MAX_MEDIA:
            raise _BadInput(f"at most {rules.MAX_MEDIA} pictures in one message")
        pictures: list[tuple[bytes, str]] = []
        total = 0
        for upload in files:
            data = upload.read(MAX_PICTURE_BYTES + 1)
            total += len(data)
            if total > MAX_PICTURE_BYTES:
                raise _BadInput(
                    "pictures over 5 MB: one message carries at most 5 MB of media"
                )
            if not data:
                raise _BadInput(f"{upload.filename or 'the picture'} is empty")
            content_type = sniff_image(data)
            if content_type is None:
                raise _BadInput(
                    f"{upload.filename or 'the file'} is not a PNG, JPEG, GIF or "
                    "WebP picture"
                )
            pictures.append((data, content_type))
        return pictures

    # -- views ------------------------------------------------------------------

    def index(self) -> str:
        return render_template("sandbox/index.html", config=self.config_json())

    def config_view(self) -> Response:
        return jsonify(self.config_json())

    def phones(self) -> Response:
        return jsonify(phones=self.config_json()["phones"])

    def messages(self, number: str) -> Response:
        phone = self.find_phone(number)
        return jsonify(phone=_phone_json(phone), messages=self.thread(phone))

    def send(self, number: str) -> tuple[Response, int]:
        # Pictures are bigger than any webhook: raise the app's limit here only.
        request.max_content_length = MAX_PICTURE_BYTES + 256 * 1024
        phone = self.find_phone(number)
        body = request.form.get("body", "")
        pictures = self.read_pictures()
        if not body.strip() and not pictures:
            raise _BadInput("type a message or attach a picture")
        if rules.utf16_length(body) > rules.MAX_BODY_UNITS:
            raise _BadInput(
                f"a message holds at most {rules.MAX_BODY_UNITS} characters"
            )
        to = request.form.get("to") or self.config.number
        target = rules.read_number(to)
        owned = self.state.number_by_phone(target) if target else None
        if owned is None:
            raise _BadInput(f"{to} is not one of the emulator's numbers")
        try:
            message: EmMessage = self.carrier.send_from_phone(
                phone.number, to, body, pictures
            )
        except ValueError as exc:
            raise _BadInput(str(exc)) from None
        return jsonify(message=self.shape(message.to_event())), 201

    def scheduled(self, number: str) -> Response:
        """The bot's messages to a phone that wait for their time or for
        quiet hours to end: shown as "scheduled for …" until they arrive."""
        phone = self.find_phone(number)
        store = self.config.store
        rows = (
            store.outbox.waiting_for(phone.number, datetime.now(UTC)) if store else []
        )
        return jsonify(
            scheduled=[
                {
                    "id": row["id"],
                    "body": row["body"],
                    "media": list(row["media"] or ()),
                    "send_at": row["send_at"].isoformat(),
                    "quiet_hours": row["held_until"] is not None
                    and row["held_until"] >= row["send_at"],
                }
                for row in rows
            ]
        )

    def broadcast(self) -> tuple[Response, int]:
        """Preview a broadcast from an uploaded CSV; ``send=1`` queues it for
        the sandbox's worker (the same path as ``textwire broadcast create``)."""
        from textwire.broadcast.service import prepare
        from textwire.errors import (
            BroadcastError,
            ConfigError,
            InvalidMessage,
            InvalidSendTime,
        )

        store, settings = self.config.store, self.config.settings
        if store is None or settings is None:
            raise _BadInput(
                "broadcasts need the bot: start the sandbox without --emulator-only"
            )
        request.max_content_length = MAX_CSV_BYTES + 64 * 1024
        path = self._save_csv()
        media = [u for u in request.form.getlist("media") if u.strip()]
        try:
            draft = prepare(
                settings,
                path,
                body=request.form.get("body", ""),
                media=media,
                at=request.form.get("at") or None,
                name=request.form.get("name") or request.files["csv"].filename,
            )
            preview = draft.preview(store, write_rejects=False)
            if preview.valid == 0:
                raise BroadcastError("no row of the list can be sent")
            created = None
            if request.form.get("send") == "1":
                created = draft.create(store, preview)
        except (BroadcastError, ConfigError, InvalidMessage, InvalidSendTime) as exc:
            raise _BadInput(str(exc)) from None
        return jsonify(_preview_json(preview, created)), 201 if created else 200

    def _save_csv(self) -> Path:
        upload = request.files.get("csv")
        if upload is None:
            raise _BadInput("choose a CSV file")
        data = upload.read(MAX_CSV_BYTES + 1)
        if len(data) > MAX_CSV_BYTES:
            raise _BadInput(
                "the sandbox takes lists up to 2 MB: use textwire broadcast"
            )
        BROADCAST_FOLDER.mkdir(parents=True, exist_ok=True)
        path = BROADCAST_FOLDER / f"{hashlib.sha256(data).hexdigest()[:16]}.csv"
        path.write_bytes(data)
        return path

    def segments(self) -> Response:
        body = request.args.get("body", "")
        info = rules.segments(body)
        length = rules.utf16_length(body)
        return jsonify(
            encoding=info.encoding,
            characters=info.characters,
            segments=info.count,
            per_segment=info.per_segment,
            unicode_chars=list(info.non_gsm),
            length=length,
            too_long=length > rules.MAX_BODY_UNITS,
            limit=rules.MAX_BODY_UNITS,
        )

    def events(self) -> Response:
        disconnected: Callable[[], bool] | None = request.environ.get(
            "waitress.client_disconnected"
        )
        return Response(
            self._stream(disconnected),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    def _stream(self, disconnected: Callable[[], bool] | None) -> Iterator[str]:
        config = self.config
        q = self.state.subscribe()
        config.track(q)
        try:
            # Sent at once so that the browser sees the stream open (and
            # reloads the thread it shows) before any event can be missed.
            yield "retry: 2000\n: connected\n\n"
            started = last_write = time.monotonic()
            wait = min(_POLL_SECONDS, config.heartbeat)
            while not config.stopping.is_set():
                if time.monotonic() - started >= config.stream_seconds:
                    return
                if disconnected is not None and disconnected():
                    return
                for event in self.state.events(q, timeout=wait):
                    if event is _CLOSE or config.stopping.is_set():
                        return
                    yield self._format(event)
                    last_write = time.monotonic()
                    if q.empty():
                        break
                if time.monotonic() - last_write >= config.heartbeat:
                    yield ": heartbeat\n\n"
                    last_write = time.monotonic()
        finally:
            config.untrack(q)
            self.state.unsubscribe(q)

    def _format(self, event: dict[str, Any]) -> str:
        kind = str(event.get("type") or "message")
        payload = dict(event)
        if kind == "message" and isinstance(event.get("message"), dict):
            payload["message"] = self.shape(event["message"])
        elif kind == "phone" and isinstance(event.get("phone"), dict):
            phone = dict(event["phone"])
            phone["country_name"] = COUNTRY_NAMES.get(
                str(phone.get("country")), phone.get("country")
            )
            payload["phone"] = phone
        data = json.dumps(payload, separators=(",", ":"), default=str)
        return f"event: {kind}\ndata: {data}\n\n"


def _preview_json(preview: Any, created: int | None) -> dict[str, Any]:
    """What the page shows of a broadcast's preview (numbers masked)."""
    from textwire.phone import mask

    return {
        "id": created,
        "rows": preview.rows,
        "valid": preview.valid,
        "invalid": preview.invalid,
        "duplicates": preview.duplicates,
        "opted_out": preview.opted_out,
        "messages": preview.messages,
        "segments": preview.segments,
        "encodings": dict(preview.encodings),
        "ucs2_chars": dict(preview.ucs2_chars),
        "by_country": {k: dict(v) for k, v in preview.by_country.items()},
        "seconds": round(preview.seconds, 1),
        "rejects": [{"line": r.line, "reason": r.reason} for r in preview.rejects],
        "samples": [
            {"to": mask(s.to), "line": s.line, "body": s.parts[0].body}
            for s in preview.samples
        ],
        "first_at": preview.first_at.isoformat() if preview.first_at else None,
    }


def create_page_blueprint(
    state: EmulatorState, carrier: Carrier, config: PageConfig
) -> Blueprint:
    """The phone page and its JSON endpoints for one sandbox."""
    page = _Page(state, carrier, config)
    bp = Blueprint(
        "sandbox_page",
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/sandbox/static",
    )
    bp.add_url_rule("/", "index", page.index)
    bp.add_url_rule("/sandbox/api/config", "config", page.config_view)
    bp.add_url_rule("/sandbox/api/phones", "phones", page.phones)
    bp.add_url_rule("/sandbox/api/phones/<number>/messages", "messages", page.messages)
    bp.add_url_rule(
        "/sandbox/api/phones/<number>/messages",
        "send",
        page.send,
        methods=["POST"],
    )
    bp.add_url_rule(
        "/sandbox/api/phones/<number>/scheduled", "scheduled", page.scheduled
    )
    bp.add_url_rule(
        "/sandbox/api/broadcasts", "broadcast", page.broadcast, methods=["POST"]
    )
    bp.add_url_rule("/sandbox/api/segments", "segments", page.segments)
    bp.add_url_rule("/sandbox/api/media/<media_sid>", "media", page.media)
    bp.add_url_rule("/sandbox/api/events", "events", page.events)

    @bp.errorhandler(_BadInput)
    def bad_input(exc: _BadInput) -> tuple[Response, int]:
        return _error(exc.message, exc.status)

    @bp.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        code = exc.code or 500
        if code == 413:
            return _error("pictures over 5 MB: one message carries at most 5 MB", 400)
        return _error(f"{exc.name}: {exc.description}", code)

    return bp

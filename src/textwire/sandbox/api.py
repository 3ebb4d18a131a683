"""The emulator's REST API: Twilio's 2010-04-01 Messages and IncomingPhoneNumbers.

A Flask blueprint (``/2010-04-01/...``, JSON only) close enough to Twilio that
the unmodified ``twilio`` client works against it with
``client.api.base_url = "http://127.0.0.1:8000"``:

* HTTP basic auth with the AccountSid and AuthToken (401 / 20003 otherwise);
  another account's SID in the path is 404 / 20404;
* ``POST Messages.json`` validates as Twilio does and answers Twilio's error
  codes in Twilio's error body ``{code, message, more_info, status}``:
  21604 no To (or a JSON body), 21211 To not a number, 21603 neither From nor
  MessagingServiceSid, 21212 From unreadable, 21606 From not the account's,
  21701 malformed MessagingServiceSid, 21704 service without numbers, 21602 no
  body and no media, 21617 body over 1600 characters, 21623 over 10 media,
  21620 a media URL that is not absolute http(s), 21609 bad StatusCallback,
  21266 To equal to From, 21610 recipient texted STOP;
* ``GET Messages.json`` lists newest first with the To / From / DateSent /
  DateSent< / DateSent> filters and Twilio's paging (PageSize, Page,
  PageToken, ``next_page_uri`` …); fetch, update (redact with ``Body=""``,
  ``Status=canceled``) and delete one message; its Media list, Media
  resources and the bytes of pictures virtual phones sent;
* ``IncomingPhoneNumbers``: list (PhoneNumber filter, any format, ``*``
  wildcards), fetch and update of the webhook fields.

``Faults`` adds latency, 500s, 429s and accepted-then-stalled creates, for
tests and benchmarks of a client's retry logic.

Choices where Twilio is silent or the emulator is smaller (also in the
report of issue 3): a number without ``+`` in ``To`` is read in the country
of ``From``; one default Messaging Service accepts any well-formed ``MG…``
SID and sends from the account's first number; ``Status=canceled`` also
cancels a message still ``queued``/``accepted`` (Twilio: only scheduled ones;
the emulator does not schedule); DateSent filters fall back on
``date_created`` for messages not yet sent; a time of exactly midnight in a
DateSent filter is read as a date (twilio-python sends dates that way).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Response, jsonify, redirect, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

from textwire import codes
from textwire.errors import InvalidMessage, InvalidPhoneNumber
from textwire.messages import MAX_BODY_CHARS, MAX_MEDIA, check_media_url
from textwire.phone import get_default_region, normalize, normalize_sender, region_of
from textwire.sandbox.carrier import Carrier, guess_content_type
from textwire.sandbox.state import (
    API_VERSION,
    EmMedia,
    EmMessage,
    EmNumber,
    EmulatorState,
    new_sid,
    rfc2822,
)

__all__ = ["Faults", "TwilioApiError", "create_api_blueprint"]

logger = logging.getLogger("textwire.sandbox.api")

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_CALLBACK_URL = 4000  # StatusCallback length limit (error 21609)
MAX_FRIENDLY_NAME = 64

_MG_SID = re.compile(r"MG[0-9a-fA-F]{32}")
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_CANCELABLE = frozenset({"queued", "accepted", "scheduled"})
_METHODS = ("GET", "POST")


# -- faults ----------------------------------------------------------------------


@dataclass
class Faults:
    """Knobs that make the emulator slow or unreliable, for tests and benchmarks.

    Attributes:
        latency: seconds added to every API request (not to media bytes).
        error_500_rate: share of Messages create calls answered 500 (20500);
            nothing is created.
        error_429_rate: share answered 429 (20429) with ``Retry-After``;
            nothing is created.
        retry_after: the ``Retry-After`` header (seconds) of those 429s.
        stall_rate: share of valid creates that are accepted (the message
            exists and is delivered) but answered only after
            ``stall_seconds``, so the client times out: the ambiguous case.
        stall_seconds: how long a stalled answer waits; :meth:`release` (or
            stopping the carrier) ends the wait early.
        seed: seed of the random draw deciding which calls fail.
    """

    latency: float = 0.0
    error_500_rate: float = 0.0
    error_429_rate: float = 0.0
    retry_after: int = 1
    stall_rate: float = 0.0
    stall_seconds: float = 30.0
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False, compare=False)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )
    _released: threading.Event = field(
        default_factory=threading.Event, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for name in ("error_500_rate", "error_429_rate", "stall_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"Faults.{name} must be between 0 and 1, not {rate}")
        if self.error_500_rate + self.error_429_rate + self.stall_rate > 1.0:
            raise ValueError("the Faults rates add up to more than 1")
        if self.latency < 0 or self.stall_seconds < 0 or self.retry_after < 0:
            raise ValueError(
                "Faults latency, stall_seconds and retry_after must be >= 0"
            )
        self._rng = random.Random(self.seed)

    def draw(self) -> str | None:
        """The fault for one create call: ``"500"``, ``"429"``, ``"stall"`` or None.

        One random number per call, so the rates are exact shares.
        """
        if not (self.error_500_rate or self.error_429_rate or self.stall_rate):
            return None
        with self._lock:
            roll = self._rng.random()
        if roll < self.error_500_rate:
            return "500"
        roll -= self.error_500_rate
        if roll < self.error_429_rate:
            return "429"
        roll -= self.error_429_rate
        return "stall" if roll < self.stall_rate else None

    def release(self) -> None:
        """End every stall in progress now (later stalls wait again)."""
        with self._lock:
            released, self._released = self._released, threading.Event()
        released.set()

    def stall(self, stopping: Callable[[], bool]) -> None:
        """Wait ``stall_seconds``, or until :meth:`release` or ``stopping()``."""
        with self._lock:
            released = self._released
        deadline = time.monotonic() + self.stall_seconds
        while not stopping():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or released.wait(min(remaining, 0.05)):
                return


# -- errors ----------------------------------------------------------------------


class TwilioApiError(Exception):
    """An error answered in Twilio's JSON error shape."""

    def __init__(
        self,
        code: int,
        message: str | None = None,
        *,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        entry = codes.CODES.get(code)
        text = message or (entry.title if entry else f"Error {code}")
        super().__init__(text)
        self.code = code
        self.message = text
        self.status = status
        self.headers = headers or {}

    def response(self) -> Response:
        body = {
            "code": self.code,
            "message": self.message,
            "more_info": codes.more_info_url(self.code),
            "status": self.status,
        }
        response = jsonify(body)
        response.status_code = self.status
        for name, value in self.headers.items():
            response.headers[name] = value
        return response


def _not_found() -> TwilioApiError:
    return TwilioApiError(
        20404, f"The requested resource {request.path} was not found", status=404
    )


def _bad_request(message: str) -> TwilioApiError:
    """A 400 for a parameter error Twilio has no documented code for."""
    return TwilioApiError(20001, message)


_GENERIC_CODES = {400: 20001, 404: 20404, 405: 20004, 413: 20001, 500: 20500}


# -- helpers ---------------------------------------------------------------------


def _utf16_len(text: str) -> int:
    """Length in UTF-16 code units: how Twilio counts the 1600 characters."""
    return len(text.encode("utf-16-le")) // 2


def _form() -> MultiDict[str, str]:
    """The request's form; a body that is not form-encoded is refused."""
    if request.content_length and request.mimetype not in _FORM_TYPES:
        raise TwilioApiError(
            20001,
            f"The request body must be application/x-www-form-urlencoded, "
            f"not {request.mimetype or 'unknown'}: Twilio's API takes form "
            "parameters, not JSON",
        )
    return request.form


def _http_url(raw: str) -> bool:
    try:
        parts = urlsplit(raw)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class _DateFilter:
    """One DateSent filter: a day, or an instant when a time of day was given."""

    op: str  # "=", "<", ">"
    value: datetime
    is_day: bool

    def matches(self, when: datetime) -> bool:
        if self.is_day or self.op == "=":
            day, limit = when.date(), self.value.date()
            return {"=": day == limit, "<": day <= limit, ">": day >= limit}[self.op]
        return when <= self.value if self.op == "<" else when >= self.value


def _parse_date_filter(name: str, raw: str, op: str) -> _DateFilter:
    """``YYYY-MM-DD``, ISO 8601 (``…T…Z`` as twilio-python sends) or RFC 2822."""
    text = raw.strip()
    if _DATE_ONLY.fullmatch(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise _bad_request(f"{name} is not a valid date: {raw!r}") from None
        return _DateFilter(op, datetime(day.year, day.month, day.day, tzinfo=UTC), True)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        try:
            value = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            raise _bad_request(
                f"{name} must be a date (YYYY-MM-DD) or a date and time "
                f"(YYYY-MM-DDTHH:MM:SSZ), not {raw!r}"
            ) from None
    value = _as_utc(value)
    # twilio-python sends a date as midnight UTC: read it as the date it was.
    midnight = value.hour == value.minute == value.second == value.microsecond == 0
    return _DateFilter(op, value, midnight)


def _page_int(name: str, default: int, low: int, high: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad_request(f"{name} must be a whole number, not {raw!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise _bad_request(f"{name} must be {bound}, not {value}")
    return value


def _page(
    items: Sequence[T],
    *,
    key: str,
    sid_of: Callable[[T], str],
    render: Callable[[T], dict[str, Any]],
    filters: Iterable[tuple[str, str]] = (),
) -> Response:
    """One page of a list resource, with Twilio's paging fields.

    ``PageToken`` is a cursor (``PA<sid>``: after that item, ``PB<sid>``:
    before it), so pages stay consistent while new messages arrive at the
    head of the list; without one, ``Page × PageSize`` is the offset.
    """
    page_size = _page_int("PageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    page = _page_int("Page", 0, 0)
    token = request.args.get("PageToken") or None
    start = page * page_size
    if token and len(token) > 2:
        sids = [sid_of(item) for item in items]
        anchor = token[2:]
        if anchor in sids:
            index = sids.index(anchor)
            if token.startswith("PA"):
                start = index + 1
            elif token.startswith("PB"):
                start = max(index - page_size, 0)
    chunk = list(items[start : start + page_size])
    fixed = list(filters)

    def uri(number: int, page_token: str | None = None) -> str:
        pairs = [*fixed, ("PageSize", str(page_size)), ("Page", str(number))]
        if page_token:
            pairs.append(("PageToken", page_token))
        return f"{request.path}?{urlencode(pairs)}"

    next_uri = None
    if chunk and start + len(chunk) < len(items):
        next_uri = uri(page + 1, "PA" + sid_of(chunk[-1]))
    previous_uri = None
    if page > 0:
        previous_uri = uri(page - 1, "PB" + sid_of(chunk[0]) if chunk else None)
    body: dict[str, Any] = {
        key: [render(item) for item in chunk],
        "end": start + max(len(chunk) - 1, 0),
        "first_page_uri": uri(0),
        "next_page_uri": next_uri,
        "page": page,
        "page_size": page_size,
        "previous_page_uri": previous_uri,
        "start": start,
        "uri": uri(page, token),
    }
    return jsonify(body)


def _media_json(message: EmMessage, media: EmMedia) -> dict[str, Any]:
    base = message.uri().removesuffix(".json")
    return {
        "account_sid": message.account_sid,
        "content_type": media.content_type,
        "date_created": rfc2822(message.date_created),
        "date_updated": rfc2822(message.date_updated),
        "parent_sid": message.sid,
        "sid": media.sid,
        "uri": f"{base}/Media/{media.sid}.json",
    }


# -- the blueprint ---------------------------------------------------------------


def create_api_blueprint(
    state: EmulatorState, carrier: Carrier, faults: Faults | None = None
) -> Blueprint:
    """Twilio's REST API 2010-04-01 over ``state``, at ``/2010-04-01``.

    Args:
        state: the emulator's account, numbers, phones and messages.
        carrier: gets every accepted outbound message (``on_created``).
        faults: latency and failure knobs; none by default.
    """
    knobs = faults if faults is not None else Faults()
    bp = Blueprint("twilio_api", __name__, url_prefix=f"/{API_VERSION}")
    account = "/Accounts/<account_sid>"

    @bp.errorhandler(TwilioApiError)
    def _twilio_error(exc: TwilioApiError) -> Response:
        return exc.response()

    @bp.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = _GENERIC_CODES.get(status, 20001 if status < 500 else 20500)
        return TwilioApiError(
            code, exc.description or exc.name, status=status
        ).response()

    @bp.before_request
    def _authenticate() -> None:
        if request.endpoint == "twilio_api.media_content":
            ref = (request.view_args or {}).get("media_ref", "")
            if not str(ref).endswith(".json"):
                return  # the bytes of a picture: no auth, like Twilio's default
        if knobs.latency > 0:
            time.sleep(knobs.latency)
        auth = request.authorization
        if (
            auth is None
            or auth.type != "basic"
            or not hmac.compare_digest(
                (auth.username or "").encode(), state.account_sid.encode()
            )
            or not hmac.compare_digest(
                (auth.password or "").encode(), state.auth_token.encode()
            )
        ):
            raise TwilioApiError(
                20003,
                "Authenticate",
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="Twilio API"'},
            )
        account_sid = (request.view_args or {}).get("account_sid")
        if account_sid is not None and account_sid != state.account_sid:
            raise _not_found()

    # -- messages --------------------------------------------------------------

    def owned_numbers() -> list[str]:
        with state.lock:
            return [n.phone_number for n in state.numbers.values()]

    def get_message(sid: str) -> EmMessage:
        message = state.get_message(sid)
        if message is None:
            raise _not_found()
        return message

    def build_message(form: MultiDict[str, str]) -> EmMessage:
        raw_to = form.get("To", "")
        if not raw_to.strip():
            raise TwilioApiError(21604, "A 'To' phone number is required.")
        raw_from = form.get("From", "").strip()
        raw_service = form.get("MessagingServiceSid", "").strip()

        # A To without "+" is read in the country of From (Twilio's documented
        # behaviour for TwiML and the legacy REST API, twilio-facts §3.1).
        region = get_default_region()
        if raw_from:
            with contextlib.suppress(InvalidPhoneNumber):
                region = region_of(normalize(raw_from)) or region
        try:
            to = normalize(raw_to, region)
        except InvalidPhoneNumber:
            raise TwilioApiError(
                21211, f"The 'To' number {raw_to} is not a valid phone number."
            ) from None

        if not raw_from and not raw_service:
            raise TwilioApiError(21603, "A 'From' phone number is required.")
        if raw_service and not _MG_SID.fullmatch(raw_service):
            raise TwilioApiError(
                21701, f"The Messaging Service Sid {raw_service} is invalid."
            )
        owned = owned_numbers()
        if raw_from:
            try:
                from_ = normalize_sender(raw_from, region)
            except InvalidPhoneNumber:
                raise TwilioApiError(
                    21212,
                    f"The 'From' number {raw_from} is not a valid phone number, "
                    "shortcode, or alphanumeric sender ID.",
                ) from None
            if from_ not in owned:
                raise TwilioApiError(
                    21606,
                    f"The From phone number {raw_from} is not a valid, SMS-capable "
                    "inbound phone number or short code for your account.",
                )
        elif owned:
            from_ = owned[0]  # the default service's sender pool: our numbers
        else:
            raise TwilioApiError(
                21704, "The Messaging Service contains no phone numbers."
            )

        body = form.get("Body", "")
        raw_media = form.getlist("MediaUrl")
        if not body and not raw_media:
            raise TwilioApiError(21602, "Message body is required.")
        if _utf16_len(body) > MAX_BODY_CHARS:
            raise TwilioApiError(
                21617,
                "The concatenated message body exceeds the "
                f"{MAX_BODY_CHARS} character limit.",
            )
        if len(raw_media) > MAX_MEDIA:
            raise TwilioApiError(
                21623,
                "Number of media files exceeds allowed limit. Up to "
                f"{MAX_MEDIA} media files are allowed in a single message.",
            )
        urls: list[str] = []
        for raw_url in raw_media:
            try:
                urls.append(check_media_url(raw_url))
            except InvalidMessage:
                raise TwilioApiError(
                    21620,
                    f"Media urls: {raw_url} are invalid. Please use only valid "
                    "http and https urls",
                ) from None

        callback = form.get("StatusCallback", "").strip() or None
        if callback is not None and (
            len(callback) > MAX_CALLBACK_URL
            or not _http_url(callback)
            or "_" in (urlsplit(callback).hostname or "")
        ):
            raise TwilioApiError(
                21609, f"The StatusCallback URL {callback} is not a valid URL."
            )

        if to == from_:
            raise TwilioApiError(21266, "'To' and 'From' number cannot be the same")
        senders = owned if raw_service and not raw_from else [from_]
        with state.lock:
            blocked = any((to, sender) in state.opted_out for sender in senders)
        if blocked:
            raise TwilioApiError(21610, "Attempt to send to unsubscribed recipient")

        now = state.clock()
        return EmMessage(
            sid=new_sid("MM" if urls else "SM"),
            account_sid=state.account_sid,
            direction="outbound-api",
            from_=from_,
            to=to,
            body=body,
            # Twilio: "queued" for a single sender, "accepted" while a
            # Messaging Service picks one (twilio-facts §4.2).
            status="accepted" if raw_service else "queued",
            media=[EmMedia(new_sid("ME"), u, guess_content_type(u)) for u in urls],
            messaging_service_sid=raw_service or None,
            status_callback=callback,
            date_created=now,
            date_updated=now,
        )

    @bp.post(f"{account}/Messages.json")
    def create_message(account_sid: str) -> tuple[Response, int]:
        if request.content_length and request.mimetype not in _FORM_TYPES:
            # Twilio documents a JSON body as a cause of 21604 (twilio-facts §1.1).
            raise TwilioApiError(
                21604,
                "A 'To' phone number is required. Send the parameters "
                "form-encoded (application/x-www-form-urlencoded), not as JSON.",
            )
        fault = knobs.draw()
        if fault == "500":
            raise TwilioApiError(20500, "Internal Server Error", status=500)
        if fault == "429":
            raise TwilioApiError(
                20429,
                "Too Many Requests",
                status=429,
                headers={"Retry-After": str(knobs.retry_after)},
            )
        message = build_message(request.form)
        state.add_message(message)
        carrier.on_created(message)
        if fault == "stall":
            knobs.stall(lambda: carrier.stopping)
        return jsonify(message.to_json()), 201

    @bp.get(f"{account}/Messages.json")
    def list_messages(account_sid: str) -> Response:
        args = request.args
        filters: list[tuple[str, str]] = []
        wanted: dict[str, str] = {}
        for name in ("To", "From"):
            raw = args.get(name)
            if raw:
                filters.append((name, raw))
                try:
                    wanted[name] = normalize_sender(raw)
                except InvalidPhoneNumber:
                    wanted[name] = raw.strip()
        dates: list[_DateFilter] = []
        for name, op in (("DateSent", "="), ("DateSent<", "<"), ("DateSent>", ">")):
            raw = args.get(name)
            if raw:
                filters.append((name, raw))
                dates.append(_parse_date_filter(name, raw, op))

        def keep(message: EmMessage) -> bool:
            if "To" in wanted and message.to != wanted["To"]:
                return False
            if "From" in wanted and message.from_ != wanted["From"]:
                return False
            when = _as_utc(message.date_sent or message.date_created)
            return all(d.matches(when) for d in dates)

        items = [m for m in state.all_messages() if keep(m)]
        return _page(
            items,
            key="messages",
            sid_of=lambda m: m.sid,
            render=EmMessage.to_json,
            filters=filters,
        )

    @bp.get(f"{account}/Messages/<sid>.json")
    def fetch_message(account_sid: str, sid: str) -> Response:
        return jsonify(get_message(sid).to_json())

    @bp.post(f"{account}/Messages/<sid>.json")
    def update_message(account_sid: str, sid: str) -> Response:
        form = _form()
        message = get_message(sid)
        body = form.get("Body")
        status = form.get("Status")
        if body is not None and body != "":
            raise _bad_request(
                "Body can only be updated to an empty string, which redacts the "
                "message text."
            )
        if status is not None and status != "canceled":
            raise _bad_request(
                f"Status can only be updated to canceled, not {status!r}"
            )
        with state.lock:
            if status == "canceled":
                if message.status not in _CANCELABLE:
                    raise TwilioApiError(30409, "This message cannot be canceled")
                message.status = "canceled"
            if body == "":
                message.body = ""
            message.date_updated = state.clock()
        state.publish({"type": "message", "message": message.to_event()})
        return jsonify(message.to_json())

    @bp.delete(f"{account}/Messages/<sid>.json")
    def delete_message(account_sid: str, sid: str) -> Response:
        if state.remove_message(sid) is None:
            raise _not_found()
        return Response(status=204)

    @bp.get(f"{account}/Messages/<message_sid>/Media.json")
    def list_media(account_sid: str, message_sid: str) -> Response:
        message = get_message(message_sid)
        return _page(
            message.media,
            key="media_list",
            sid_of=lambda m: m.sid,
            render=lambda m: _media_json(message, m),
        )

    @bp.get(f"{account}/Messages/<message_sid>/Media/<media_ref>")
    def media_content(
        account_sid: str, message_sid: str, media_ref: str
    ) -> WerkzeugResponse:
        media_sid = media_ref.removesuffix(".json")
        message = state.get_message(message_sid)
        if message is None or account_sid != state.account_sid:
            raise _not_found()
        media = next((m for m in message.media if m.sid == media_sid), None)
        if media is None:
            raise _not_found()
        if media_ref.endswith(".json"):
            return jsonify(_media_json(message, media))
        with state.lock:
            blob = state.media_blobs.get(media_sid)
        if blob is None:
            # Media of an outbound message: the emulator keeps only its URL.
            return redirect(media.url, code=302)
        data, content_type = blob
        return Response(data, content_type=content_type)

    # -- incoming phone numbers ------------------------------------------------

    def get_number(sid: str) -> EmNumber:
        with state.lock:
            number = state.numbers.get(sid)
        if number is None:
            raise _not_found()
        return number

    @bp.get(f"{account}/IncomingPhoneNumbers.json")
    def list_numbers(account_sid: str) -> Response:
        filters: list[tuple[str, str]] = []
        by_phone: Callable[[EmNumber], bool] | None = None
        raw_phone = request.args.get("PhoneNumber")
        if raw_phone:
            filters.append(("PhoneNumber", raw_phone))
            by_phone = _phone_matcher(raw_phone)
        name = request.args.get("FriendlyName")
        if name:
            filters.append(("FriendlyName", name))

        def keep(number: EmNumber) -> bool:
            if by_phone is not None and not by_phone(number):
                return False
            return not name or number.friendly_name == name

        with state.lock:
            items = sorted(
                (n for n in state.numbers.values() if keep(n)),
                key=lambda n: n.date_created,
            )
        return _page(
            items,
            key="incoming_phone_numbers",
            sid_of=lambda n: n.sid,
            render=EmNumber.to_json,
            filters=filters,
        )

    @bp.get(f"{account}/IncomingPhoneNumbers/<sid>.json")
    def fetch_number(account_sid: str, sid: str) -> Response:
        return jsonify(get_number(sid).to_json())

    @bp.post(f"{account}/IncomingPhoneNumbers/<sid>.json")
    def update_number(account_sid: str, sid: str) -> Response:
        form = _form()
        number = get_number(sid)
        changes: dict[str, Any] = {}
        for param, attr in (
            ("SmsUrl", "sms_url"),
            ("SmsFallbackUrl", "sms_fallback_url"),
            ("StatusCallback", "status_callback"),
        ):
            raw = form.get(param)
            if raw is None:
                continue
            url = raw.strip()
            if url and not _http_url(url):
                raise TwilioApiError(
                    21502,
                    f"{param} is not valid: {raw!r} is not an absolute http:// "
                    "or https:// URL",
                )
            changes[attr] = url or None
        for param, attr in (
            ("SmsMethod", "sms_method"),
            ("SmsFallbackMethod", "sms_fallback_method"),
            ("StatusCallbackMethod", "status_callback_method"),
        ):
            raw = form.get(param)
            if raw is None:
                continue
            method = raw.strip().upper()
            if method not in _METHODS:
                raise _bad_request(f"{param} must be GET or POST, not {raw!r}")
            changes[attr] = method
        friendly = form.get("FriendlyName")
        if friendly is not None:
            if len(friendly) > MAX_FRIENDLY_NAME:
                raise _bad_request(
                    f"FriendlyName may be at most {MAX_FRIENDLY_NAME} characters"
                )
            changes["friendly_name"] = friendly or number.phone_number
        with state.lock:
            for attr, value in changes.items():
                setattr(number, attr, value)
            number.date_updated = state.clock()
            resource = number.to_json()
        state.publish({"type": "number", "number": resource})
        return jsonify(resource)

    # -- everything else -------------------------------------------------------

    @bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def unknown(rest: str) -> Response:
        raise _not_found()

    return bp


def _phone_matcher(raw: str) -> Callable[[EmNumber], bool]:
    """Twilio's PhoneNumber filter: a whole number in any format, or a part of
    one with ``*`` for any digit."""
    try:
        exact = normalize(raw)
    except InvalidPhoneNumber:
        exact = None
    if exact is not None:
        return lambda n: n.phone_number == exact
    pattern = "".join("[0-9]" if ch == "*" else ch for ch in raw if ch in "0123456789*")
    if not pattern:
        return lambda n: False
    regex = re.compile(pattern)
    return lambda n: regex.search(n.phone_number) is not None

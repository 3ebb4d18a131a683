"""Views of the Messages resource: create, list, fetch, update, delete.

``POST Messages.json`` validates as Twilio does, in Twilio's order, with
Twilio's codes (see the package docstring); every rule comes from
:mod:`textwire.sandbox.rules`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime

from flask import Response, jsonify, request
from werkzeug.datastructures import MultiDict

from textwire.sandbox import rules
from textwire.sandbox.api.context import emulator, form, form_encoded
from textwire.sandbox.api.errors import TwilioApiError, bad_request, not_found
from textwire.sandbox.api.media import message_or_404
from textwire.sandbox.api.paging import page
from textwire.sandbox.carrier import guess_content_type
from textwire.sandbox.state import EmMedia, EmMessage, EmulatorState

__all__ = [
    "create_message",
    "delete_message",
    "fetch_message",
    "list_messages",
    "update_message",
]

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_CANCELABLE = frozenset({"queued", "accepted", "scheduled"})


# -- create ----------------------------------------------------------------------


def _owned_numbers(state: EmulatorState) -> list[str]:
    with state.lock:
        return [n.phone_number for n in state.numbers.values()]


def _recipient(params: MultiDict[str, str]) -> str:
    raw_to = params.get("To", "")
    if not raw_to.strip():
        raise TwilioApiError(21604, "A 'To' phone number is required.")
    # A To without "+" is read in the country of From (Twilio's documented
    # behaviour for TwiML and the legacy REST API, twilio-facts §3.1).
    raw_from = params.get("From", "").strip()
    sender = rules.read_number(raw_from) if raw_from else None
    region = (rules.region_of(sender) if sender else None) or "US"
    to = rules.read_number(raw_to, region)
    if to is None:
        raise TwilioApiError(
            21211, f"The 'To' number {raw_to} is not a valid phone number."
        )
    return to


def _service_pool(raw_service: str, state: EmulatorState) -> list[str]:
    """The sender pool of the Messaging Service a create names."""
    if not rules.is_service_sid(raw_service):
        raise TwilioApiError(
            21701, f"The Messaging Service Sid {raw_service} is invalid."
        )
    pool = state.service_numbers(raw_service)
    if pool is None:
        # Error dictionary, 21701: "The Messaging Service does not exist".
        raise TwilioApiError(
            21701,
            f"The Messaging Service does not exist: {raw_service} is not a "
            "Messaging Service of this account.",
        )
    if not pool:
        raise TwilioApiError(21704, "The Messaging Service contains no phone numbers.")
    return pool


def _sender(
    params: MultiDict[str, str], state: EmulatorState
) -> tuple[str | None, list[str]]:
    """The From (None: the service will choose one) and the numbers the
    message may be sent from."""
    raw_from = params.get("From", "").strip()
    raw_service = params.get("MessagingServiceSid", "").strip()
    if not raw_from and not raw_service:
        raise TwilioApiError(21603, "A 'From' phone number is required.")
    pool = _service_pool(raw_service, state) if raw_service else []
    if not raw_from:
        return None, pool
    from_ = rules.read_sender(raw_from)
    if from_ is None:
        raise TwilioApiError(
            21212,
            f"The 'From' number {raw_from} is not a valid phone number, "
            "shortcode, or alphanumeric sender ID.",
        )
    if from_ not in _owned_numbers(state):
        raise TwilioApiError(
            21606,
            f"The From phone number {raw_from} is not a valid, SMS-capable "
            "inbound phone number or short code for your account.",
        )
    return from_, [from_]


def _content(params: MultiDict[str, str]) -> tuple[str, list[str]]:
    """The body and the media URLs, within Twilio's limits."""
    body = params.get("Body", "")
    raw_media = params.getlist("MediaUrl")
    if not body and not raw_media:
        raise TwilioApiError(21602, "Message body is required.")
    if rules.utf16_length(body) > rules.MAX_BODY_UNITS:
        raise TwilioApiError(
            21617,
            "The concatenated message body exceeds the "
            f"{rules.MAX_BODY_UNITS} character limit.",
        )
    if len(raw_media) > rules.MAX_MEDIA:
        raise TwilioApiError(
            21623,
            "Number of media files exceeds allowed limit. Up to "
            f"{rules.MAX_MEDIA} media files are allowed in a single message.",
        )
    urls = [raw.strip() for raw in raw_media]
    for raw, url in zip(raw_media, urls, strict=True):
        if not rules.is_http_url(url):
            raise TwilioApiError(
                21620,
                f"Media urls: {raw} are invalid. Please use only valid "
                "http and https urls",
            )
    return body, urls


def _status_callback(params: MultiDict[str, str]) -> str | None:
    callback = params.get("StatusCallback", "").strip() or None
    if callback is not None and not rules.valid_status_callback(callback):
        raise TwilioApiError(
            21609, f"The StatusCallback URL {callback} is not a valid URL."
        )
    return callback


def _build(params: MultiDict[str, str], state: EmulatorState) -> EmMessage:
    """The message a create makes, or the first error Twilio would answer."""
    to = _recipient(params)
    from_, senders = _sender(params, state)
    service = params.get("MessagingServiceSid", "").strip() or None
    body, urls = _content(params)
    callback = _status_callback(params)
    if to == from_:
        raise TwilioApiError(21266, "'To' and 'From' number cannot be the same")
    # In a Messaging Service an opt-out covers every sender of its pool
    # (twilio-facts §7).
    with state.lock:
        blocked = any((to, sender) in state.opted_out for sender in senders)
    if blocked:
        raise TwilioApiError(21610, "Attempt to send to unsubscribed recipient")
    now = state.clock()
    return EmMessage(
        sid=rules.new_sid("MM" if urls else "SM"),
        account_sid=state.account_sid,
        direction="outbound-api",
        # Through a service without From, Twilio answers ``from: null`` until
        # it has picked a sender; the carrier does that when it queues it.
        from_=from_,
        to=to,
        body=body,
        # Twilio: "queued" for a single sender, "accepted" while a
        # Messaging Service picks one (twilio-facts §4.2).
        status="accepted" if service else "queued",
        media=[EmMedia(rules.new_sid("ME"), u, guess_content_type(u)) for u in urls],
        messaging_service_sid=service,
        status_callback=callback,
        date_created=now,
        date_updated=now,
    )


def create_message(account_sid: str) -> tuple[Response, int]:
    if not form_encoded():
        # Twilio documents a JSON body as a cause of 21604 (twilio-facts §1.1).
        raise TwilioApiError(
            21604,
            "A 'To' phone number is required. Send the parameters "
            "form-encoded (application/x-www-form-urlencoded), not as JSON.",
        )
    current = emulator()
    fault = current.faults.draw()
    if fault == "500":
        raise TwilioApiError(20500, "Internal Server Error", status=500)
    if fault == "429":
        raise TwilioApiError(
            20429,
            "Too Many Requests",
            status=429,
            headers={"Retry-After": str(current.faults.retry_after)},
        )
    message = _build(request.form, current.state)
    current.state.add_message(message)
    current.carrier.on_created(message)
    if fault == "stall":
        current.faults.stall(lambda: current.carrier.stopping)
    return jsonify(message.to_json()), 201


# -- list ------------------------------------------------------------------------


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
            raise bad_request(f"{name} is not a valid date: {raw!r}") from None
        return _DateFilter(op, datetime(day.year, day.month, day.day, tzinfo=UTC), True)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        try:
            value = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            raise bad_request(
                f"{name} must be a date (YYYY-MM-DD) or a date and time "
                f"(YYYY-MM-DDTHH:MM:SSZ), not {raw!r}"
            ) from None
    value = _as_utc(value)
    # twilio-python sends a date as midnight UTC: read it as the date it was.
    midnight = value.hour == value.minute == value.second == value.microsecond == 0
    return _DateFilter(op, value, midnight)


def list_messages(account_sid: str) -> Response:
    """Newest first, with the To / From / DateSent filters (twilio-facts §1.6)."""
    args = request.args
    filters: list[tuple[str, str]] = []
    wanted: dict[str, str] = {}
    for name in ("To", "From"):
        raw = args.get(name)
        if raw:
            filters.append((name, raw))
            wanted[name] = rules.read_sender(raw) or raw.strip()
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

    items = [m for m in emulator().state.all_messages() if keep(m)]
    return page(
        items,
        key="messages",
        sid_of=lambda m: m.sid,
        render=EmMessage.to_json,
        filters=filters,
    )


# -- one message -------------------------------------------------------------------


def fetch_message(account_sid: str, sid: str) -> Response:
    return jsonify(message_or_404(sid).to_json())


def update_message(account_sid: str, sid: str) -> Response:
    """Redact (``Body=""``) or cancel (``Status=canceled``), as OAI allows."""
    params = form()
    message = message_or_404(sid)
    body = params.get("Body")
    status = params.get("Status")
    if body is not None and body != "":
        raise bad_request(
            "Body can only be updated to an empty string, which redacts the "
            "message text."
        )
    if status is not None and status != "canceled":
        raise bad_request(f"Status can only be updated to canceled, not {status!r}")
    state = emulator().state
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


def delete_message(account_sid: str, sid: str) -> Response:
    if emulator().state.remove_message(sid) is None:
        raise not_found()
    return Response(status=204)

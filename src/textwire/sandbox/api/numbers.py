"""Views of IncomingPhoneNumbers: list (with Twilio's filters), fetch, update.

Updating a number's ``SmsUrl`` is how a tunnel or a test points the
emulator's inbound webhooks at an app (twilio-facts §11).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import Response, jsonify, request
from werkzeug.datastructures import MultiDict

from textwire.sandbox import rules
from textwire.sandbox.api.context import emulator, form
from textwire.sandbox.api.errors import TwilioApiError, bad_request, not_found
from textwire.sandbox.api.paging import page
from textwire.sandbox.state import EmNumber

__all__ = ["fetch_number", "list_numbers", "update_number"]

MAX_FRIENDLY_NAME = 64
_METHODS = ("GET", "POST")
_URLS = (
    ("SmsUrl", "sms_url"),
    ("SmsFallbackUrl", "sms_fallback_url"),
    ("StatusCallback", "status_callback"),
)
_URL_METHODS = (
    ("SmsMethod", "sms_method"),
    ("SmsFallbackMethod", "sms_fallback_method"),
    ("StatusCallbackMethod", "status_callback_method"),
)


def _number_or_404(sid: str) -> EmNumber:
    state = emulator().state
    with state.lock:
        number = state.numbers.get(sid)
    if number is None:
        raise not_found()
    return number


def _phone_matcher(raw: str) -> Callable[[EmNumber], bool]:
    """Twilio's PhoneNumber filter: a whole number in any format, or a part of
    one with ``*`` for any digit."""
    exact = rules.read_number(raw)
    if exact is not None:
        return lambda n: n.phone_number == exact
    pattern = "".join("[0-9]" if ch == "*" else ch for ch in raw if ch in "0123456789*")
    if not pattern:
        return lambda n: False
    compiled = re.compile(pattern)
    return lambda n: compiled.search(n.phone_number) is not None


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

    state = emulator().state
    with state.lock:
        items = sorted(
            (n for n in state.numbers.values() if keep(n)),
            key=lambda n: n.date_created,
        )
    return page(
        items,
        key="incoming_phone_numbers",
        sid_of=lambda n: n.sid,
        render=EmNumber.to_json,
        filters=filters,
    )


def fetch_number(account_sid: str, sid: str) -> Response:
    return jsonify(_number_or_404(sid).to_json())


def _changes(params: MultiDict[str, str], number: EmNumber) -> dict[str, Any]:
    """The attributes an update sets, each value checked as Twilio does."""
    changes: dict[str, Any] = {}
    for param, attr in _URLS:
        raw = params.get(param)
        if raw is None:
            continue
        url = raw.strip()
        if url and not rules.is_http_url(url):
            raise TwilioApiError(
                21502,
                f"{param} is not valid: {raw!r} is not an absolute http:// "
                "or https:// URL",
            )
        changes[attr] = url or None
    for param, attr in _URL_METHODS:
        raw = params.get(param)
        if raw is None:
            continue
        method = raw.strip().upper()
        if method not in _METHODS:
            raise bad_request(f"{param} must be GET or POST, not {raw!r}")
        changes[attr] = method
    friendly = params.get("FriendlyName")
    if friendly is not None:
        if len(friendly) > MAX_FRIENDLY_NAME:
            raise bad_request(
                f"FriendlyName may be at most {MAX_FRIENDLY_NAME} characters"
            )
        changes["friendly_name"] = friendly or number.phone_number
    return changes


def update_number(account_sid: str, sid: str) -> Response:
    params = form()
    number = _number_or_404(sid)
    changes = _changes(params, number)
    state = emulator().state
    with state.lock:
        for attr, value in changes.items():
            setattr(number, attr, value)
        number.date_updated = state.clock()
        resource = number.to_json()
    state.publish({"type": "number", "number": resource})
    return jsonify(resource)

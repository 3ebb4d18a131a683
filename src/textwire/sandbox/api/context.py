"""What the API's views work on, reached through ``current_app.extensions``.

:func:`textwire.sandbox.api.create_api_blueprint` stores one
:class:`Emulator` in the app it is registered on; the module-level views of
``messages``, ``media`` and ``numbers`` read it with :func:`emulator`.
Authentication and the latency knob run before every request.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from flask import current_app, request
from werkzeug.datastructures import MultiDict

from textwire.sandbox.api.errors import TwilioApiError, not_found
from textwire.sandbox.api.faults import Faults
from textwire.sandbox.carrier import Carrier
from textwire.sandbox.state import EmulatorState

__all__ = ["EXTENSION", "Emulator", "authenticate", "emulator", "form", "form_encoded"]

EXTENSION = "textwire.sandbox.api"
"""The key of the :class:`Emulator` in ``app.extensions``."""

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True)
class Emulator:
    """The account state, the carrier and the fault knobs behind one API."""

    state: EmulatorState
    carrier: Carrier
    faults: Faults


def emulator() -> Emulator:
    """The emulator of the app handling the current request."""
    found: Emulator = current_app.extensions[EXTENSION]
    return found


def form_encoded() -> bool:
    """Whether the request has no body or a form body (Twilio's API takes form
    parameters only)."""
    return not request.content_length or request.mimetype in _FORM_TYPES


def form() -> MultiDict[str, str]:
    """The request's form; a body that is not form-encoded is refused."""
    if not form_encoded():
        raise TwilioApiError(
            20001,
            f"The request body must be application/x-www-form-urlencoded, "
            f"not {request.mimetype or 'unknown'}: Twilio's API takes form "
            "parameters, not JSON",
        )
    return request.form


def authenticate() -> None:
    """HTTP basic auth with the account SID and auth token (401 / 20003), and
    the account of the path (404 for another one)."""
    # A media file's bytes need the account's credentials too: "Twilio
    # enforces HTTP Basic Authentication for all media URLs"
    # (https://www.twilio.com/docs/messaging/api/media-resource). The latency
    # knob slows the API, not the files.
    bytes_only = request.endpoint == "twilio_api.media_content" and not str(
        (request.view_args or {}).get("media_ref", "")
    ).endswith(".json")
    current = emulator()
    if current.faults.latency > 0 and not bytes_only:
        time.sleep(current.faults.latency)  # the knob: a slow Twilio
    state = current.state
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
        raise not_found()

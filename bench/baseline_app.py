"""The baseline: an SMS bot written the way Twilio's Flask quickstart writes it.

The webhook checks ``X-Twilio-Signature`` with ``RequestValidator`` against
``request.url`` (as in Twilio's "Secure your Flask app" tutorial) and answers
a TwiML ``MessagingResponse`` with the help desk's text and its two pictures.
No database, no dedupe, no outbox: what users would otherwise write.

    gunicorn -w 2 -b 127.0.0.1:8000 bench.baseline_app:app
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, abort, request
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

HELP_TEXT = (
    "Hi from the textwire help desk! Reply HOURS for opening hours or "
    "TICKET to report a problem. A person answers within one working day."
)

app = Flask(__name__)


def validate_twilio_request(f: Callable[..., Any]) -> Callable[..., Any]:
    """Validates that incoming requests genuinely originated from Twilio."""

    @wraps(f)
    def decorated_function(*args: Any, **kwargs: Any) -> Any:
        validator = RequestValidator(os.environ.get("TWILIO_AUTH_TOKEN"))
        request_valid = validator.validate(
            request.url, request.form, request.headers.get("X-TWILIO-SIGNATURE", "")
        )
        if request_valid:
            return f(*args, **kwargs)
        return abort(403)

    return decorated_function


@app.route("/twilio/sms", methods=["POST"])
@validate_twilio_request
def sms_reply() -> str:
    """Respond to incoming messages with the help text and two pictures."""
    base = request.url_root.rstrip("/")
    resp = MessagingResponse()
    msg = resp.message(HELP_TEXT)
    msg.media(f"{base}/media/logo.png")
    msg.media(f"{base}/media/helpdesk.png")
    return str(resp)


# The same bot whose handler takes a second (a model or API call), for
# bench/slowbot.py: ``waitress-serve bench.baseline_app:slow_app``.
slow_app = Flask(__name__ + ".slow")


@slow_app.route("/twilio/sms", methods=["POST"])
@validate_twilio_request
def slow_reply() -> str:
    """Think for a second, then answer in TwiML."""
    time.sleep(1.0)  # the simulated model call
    resp = MessagingResponse()
    resp.message(f"Thought about {request.form.get('Body', '')!r} for a second.")
    return str(resp)


@slow_app.get("/")
def slow_home() -> str:
    return "ok"

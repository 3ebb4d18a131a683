"""Blueprint ``textwire_selftest``: ``POST /twilio/selftest`` for ``textwire doctor``.

A request signed like Twilio's webhooks (X-Twilio-Signature over the public URL
and the form, with the auth token), checked by the same code as the webhooks.
It changes nothing: a correctly signed request gets ``200 {"ok": true, ...}``
echoing its ``Nonce``; a wrong signature gets 403, as a webhook would. So a
200 proves the public URL reaches this server and that the URL Twilio signs
is the one the server checks against.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, request
from werkzeug.exceptions import HTTPException

from textwire import __version__
from textwire.web.errors import plain_error
from textwire.web.runtime import current_runtime
from textwire.web.security import public_base_url, verify_signature

__all__ = ["SELFTEST_PATH", "bp"]

SELFTEST_PATH = "/twilio/selftest"
"""Where the self-test answers, with the default ``/twilio`` prefix."""

bp = Blueprint("textwire_selftest", __name__, url_prefix="/twilio")
bp.register_error_handler(HTTPException, plain_error)


@bp.post("/selftest")
def selftest() -> Response:
    rt = current_runtime()
    checked = rt.settings.validate_signatures
    if checked and not verify_signature(
        request, rt.settings.twilio_auth_token or "", rt.settings.public_url
    ):
        abort(403, "invalid or missing X-Twilio-Signature")
    return jsonify(
        ok=True,
        nonce=request.form.get("Nonce", ""),
        signatures_checked=checked,
        public_url=public_base_url(request, rt.settings.public_url),
        bot=rt.bot.name,
        version=__version__,
    )

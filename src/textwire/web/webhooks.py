"""Blueprint ``textwire_webhooks``: Twilio's inbound message webhook and status
callback, under ``/twilio`` unless mounted with another ``url_prefix``."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, request
from werkzeug.exceptions import HTTPException

from textwire import metrics
from textwire.context import HandleOptions
from textwire.errors import MalformedWebhook
from textwire.messages import Inbound, StatusCallback
from textwire.phone import mask
from textwire.service import handle_inline
from textwire.web.errors import plain_error, register_database_errors
from textwire.web.runtime import Mount, current_runtime
from textwire.web.security import public_base_url, verify_signature
from textwire.web.twiml import EMPTY_TWIML, render_replies, twiml_response

__all__ = ["EMPTY_TWIML", "MAX_FORM_PARTS", "bp"]

logger = logging.getLogger("textwire.web")

MAX_FORM_PARTS = 200

bp = Blueprint("textwire_webhooks", __name__, url_prefix="/twilio")
bp.register_error_handler(HTTPException, plain_error)
# Database down: 503 with Retry-After, never a 200 for an unstored message.
register_database_errors(bp)


@bp.before_request
def _limits() -> None:
    # Per request, so an app textwire is mounted on keeps its own limits.
    request.max_content_length = current_runtime().settings.max_request_bytes
    request.max_form_parts = MAX_FORM_PARTS


def _verify() -> None:
    rt = current_runtime()
    if not rt.settings.validate_signatures:
        return
    token = rt.settings.twilio_auth_token or ""
    if not verify_signature(request, token, rt.settings.public_url):
        abort(403, "invalid or missing X-Twilio-Signature")


@bp.post("/sms")
def inbound() -> Response:
    """Record the message in the inbox and answer at once; a worker runs the
    bot. In the ``twiml`` reply mode the bot runs here and its replies are
    the answer."""
    rt = current_runtime()
    _verify()
    try:
        msg = Inbound.from_form(request.form, region=rt.settings.default_region)
    except MalformedWebhook as exc:
        logger.warning("rejected malformed webhook: %s", exc)
        abort(400, str(exc))
    if rt.settings.reply_mode == "twiml":
        return _inline(rt, msg)
    # The handler's media URLs: the public URL, else as this request saw it.
    public_url = None
    if not rt.settings.public_url:
        public_url = public_base_url(request, None) + rt.extras_prefix
    inbox_id = rt.store.inbox.record(msg, rt.clock(), public_url=public_url)
    metrics.count_inbound(duplicate=inbox_id is None)
    if inbox_id is None:
        logger.info("inbound %s from=%s duplicate", msg.sid, mask(msg.from_))
    else:
        rt.recorded()
    return twiml_response(EMPTY_TWIML)


def _inline(rt: Mount, msg: Inbound) -> Response:
    base = public_base_url(request, rt.settings.public_url)
    result = handle_inline(
        rt.store,
        rt.bot,
        msg,
        settings=rt.settings,
        options=HandleOptions.from_settings(rt.settings, base + rt.extras_prefix),
        run_async=rt.runtime.run_async,
        now=rt.clock(),
    )
    return twiml_response(
        render_replies(
            result.replies, result.outbox_ids, status_url=base + rt.status_path
        )
    )


@bp.post("/status")
def status() -> Response:
    """Apply a delivery status callback (or a TwiML reply's ``action``
    callback) to the message it reports on."""
    rt = current_runtime()
    _verify()
    try:
        callback = StatusCallback.from_form(
            request.form, outbox=request.args.get("outbox")
        )
    except MalformedWebhook as exc:
        logger.warning("rejected malformed status callback: %s", exc)
        abort(400, str(exc))
    sid, new_status, error_code = callback.sid, callback.status, callback.error_code
    from textwire.codes import describe

    found = rt.store.messages.update_status(
        sid=sid,
        outbox_id=callback.outbox_id,
        status=new_status,
        error_code=error_code,
        error_message=describe(error_code) if error_code else None,
        now=rt.clock(),
    )
    metrics.count_status_callback(new_status)
    if not found:
        logger.warning("status %s for unknown message %s ignored", new_status, sid)
    else:
        logger.info(
            "status %s for %s%s",
            new_status,
            sid,
            f" error {error_code}" if error_code else "",
        )
    return Response("", status=204)

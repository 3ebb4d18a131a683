"""TwiML answers to the inbound webhook: empty, or the replies themselves.

In the ``twiml`` reply mode each reply becomes one ``<Message>`` with a
``<Body>`` and one ``<Media>`` per picture — one message, as through the REST
API — whose ``action`` and ``statusCallback`` bring its status back to
``/twilio/status?outbox=N``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from flask import Response
from twilio.twiml.messaging_response import MessagingResponse

from textwire.messages import Reply

__all__ = ["EMPTY_TWIML", "TWIML_MAX_BYTES", "render_replies", "twiml_response"]

logger = logging.getLogger("textwire.web")

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

TWIML_MAX_BYTES = 64 * 1024
"""Twilio refuses a larger TwiML document (error 11750) and sends none of it."""

# Characters XML 1.0 cannot carry at all: one would make Twilio reject the
# whole document (12100), losing every reply in it.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def render_replies(
    replies: Sequence[Reply], outbox_ids: Sequence[int], *, status_url: str
) -> str:
    """The TwiML document that sends ``replies`` in order, one message each.

    Args:
        replies: the replies, after the MMS policy.
        outbox_ids: each reply's outbox id, in the same order.
        status_url: the absolute URL of the status callback endpoint.
    """
    if not replies:
        return EMPTY_TWIML
    response = MessagingResponse()
    for reply, outbox_id in zip(replies, outbox_ids, strict=True):
        callback = f"{status_url}?outbox={int(outbox_id)}"
        # Twilio recommends both attributes with the same URL: which one it
        # calls has depended on the kind of message.
        message = response.message(
            action=callback, method="POST", status_callback=callback
        )
        if reply.body:
            message.body(_NOT_XML.sub("", reply.body))
        for url in reply.media:
            message.media(url)
    document: str = response.to_xml()
    size = len(document.encode("utf-8"))
    if size > TWIML_MAX_BYTES:
        logger.error(
            "TwiML answer of %d replies is %d bytes, over Twilio's 64 kB limit: "
            "Twilio will refuse it (error 11750) and send none of them; send "
            "fewer or shorter replies, or use TEXTWIRE_REPLY_MODE=rest",
            len(replies),
            size,
        )
    return document


def twiml_response(document: str = EMPTY_TWIML) -> Response:
    return Response(document, status=200, content_type="text/xml; charset=utf-8")

"""Views of a message's Media: the list, one Media resource, and its bytes."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, redirect
from werkzeug.wrappers import Response as WerkzeugResponse

from textwire.sandbox.api.context import emulator
from textwire.sandbox.api.errors import not_found
from textwire.sandbox.api.paging import page
from textwire.sandbox.state import EmMedia, EmMessage, rfc2822

__all__ = ["delete_media", "list_media", "media_content", "message_or_404"]


def message_or_404(sid: str) -> EmMessage:
    """The account's message ``sid``, or Twilio's 404."""
    message = emulator().state.get_message(sid)
    if message is None:
        raise not_found()
    return message


def _media_json(message: EmMessage, media: EmMedia) -> dict[str, Any]:
    """The Media resource as Twilio's API returns it (OAI)."""
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


def list_media(account_sid: str, message_sid: str) -> Response:
    message = message_or_404(message_sid)
    return page(
        message.media,
        key="media_list",
        sid_of=lambda m: m.sid,
        render=lambda m: _media_json(message, m),
    )


def media_content(
    account_sid: str, message_sid: str, media_ref: str
) -> WerkzeugResponse:
    """``…/Media/ME….json`` is the resource; without ``.json``, the bytes."""
    state = emulator().state
    media_sid = media_ref.removesuffix(".json")
    message = state.get_message(message_sid)
    if message is None or account_sid != state.account_sid:
        raise not_found()
    media = next((m for m in message.media if m.sid == media_sid), None)
    if media is None:
        raise not_found()
    if media_ref.endswith(".json"):
        return jsonify(_media_json(message, media))
    with state.lock:
        blob = state.media_blobs.get(media_sid)
    if blob is None:
        # Media of an outbound message: the emulator keeps only its URL.
        return redirect(media.url, code=302)
    data, content_type = blob
    return Response(data, content_type=content_type)


def delete_media(account_sid: str, message_sid: str, media_sid: str) -> Response:
    """Delete a Media resource and its file (204); Twilio keeps stored media
    "until you delete the related Media subresource instance"."""
    state = emulator().state
    message = state.get_message(message_sid)
    if message is None or account_sid != state.account_sid:
        raise not_found()
    with state.lock:
        kept = [m for m in message.media if m.sid != media_sid]
        if len(kept) == len(message.media):
            raise not_found()
        message.media = kept
        state.media_blobs.pop(media_sid, None)
    return Response(status=204)

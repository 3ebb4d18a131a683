"""Blueprint ``textwire_media``: the bot's own files, for Twilio to fetch."""

from __future__ import annotations

from flask import Blueprint, Response, abort, send_from_directory
from werkzeug.exceptions import HTTPException

from textwire.web.errors import plain_error
from textwire.web.runtime import current_runtime

__all__ = ["bp"]

bp = Blueprint("textwire_media", __name__)
bp.register_error_handler(HTTPException, plain_error)


@bp.get("/media/<path:filename>")
def media(filename: str) -> Response:
    """Files from the bot's media folder, for Twilio to fetch as MMS media."""
    folder = current_runtime().bot.media_folder
    if folder is None:
        abort(404)
    response = send_from_directory(folder, filename, max_age=3600)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response

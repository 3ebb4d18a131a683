"""Blueprint ``health``: liveness with a database check, and the bot's media."""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, send_from_directory

from textwire import __version__
from textwire.errors import StorageError
from textwire.web.runtime import current_runtime

__all__ = ["bp"]

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    rt = current_runtime()
    try:
        rt.store.check()
    except StorageError as exc:
        return jsonify(status="error", database=str(exc), version=__version__), 503
    return jsonify(status="ok", database="ok", version=__version__), 200


@bp.get("/media/<path:filename>")
def media(filename: str) -> Response:
    """Files from the bot's media folder, for Twilio to fetch as MMS media."""
    folder = current_runtime().bot.media_folder
    if folder is None:
        abort(404)
    response = send_from_directory(folder, filename, max_age=3600)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response

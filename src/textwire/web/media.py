"""Blueprint ``textwire_media``: the bot's own files, for Twilio to fetch."""

from __future__ import annotations

import stat
from pathlib import Path

from flask import Blueprint, Response, abort, send_from_directory
from werkzeug.exceptions import HTTPException
from werkzeug.security import safe_join

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
    root = folder.resolve()
    inside = _regular_file_inside(root, filename)
    if inside is None:
        abort(404)
    response = send_from_directory(root, inside, max_age=3600)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _regular_file_inside(root: Path, filename: str) -> str | None:
    """``filename``'s path relative to ``root`` once every symbolic link is
    resolved, when that is a regular file inside ``root``; else None.

    safe_join alone stops ``..`` but follows links, so a link placed in the
    folder (``passwd -> /etc/passwd``) would serve what it points at.
    """
    joined = safe_join(str(root), filename)
    if joined is None:
        return None
    try:
        resolved = Path(joined).resolve(strict=True)
        mode = resolved.stat().st_mode
    except (OSError, RuntimeError):  # missing, dangling, a loop
        return None
    if not stat.S_ISREG(mode) or not resolved.is_relative_to(root):
        return None
    return resolved.relative_to(root).as_posix()

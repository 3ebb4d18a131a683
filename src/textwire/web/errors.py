"""Plain-text HTTP errors for textwire's own routes."""

from __future__ import annotations

from flask import Response
from werkzeug.exceptions import HTTPException

__all__ = ["plain_error"]


def plain_error(exc: HTTPException) -> Response:
    """``403 Forbidden: …`` as one line of text: Twilio's debugger shows it as is.

    No HTML and no traceback. Registered on textwire's blueprints (and on the
    whole app only by ``create_app``, whose app is all textwire's), so an app
    textwire is mounted on keeps its own error pages.
    """
    code = exc.code or 500
    return Response(
        f"{code} {exc.name}: {exc.description}\n",
        status=code,
        content_type="text/plain; charset=utf-8",
    )

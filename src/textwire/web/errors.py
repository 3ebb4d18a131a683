"""Plain-text HTTP errors for textwire's own routes."""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, Response, request
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from textwire.errors import StorageError

__all__ = [
    "RETRY_AFTER_SECONDS",
    "database_unavailable",
    "plain_error",
    "register_database_errors",
]

logger = logging.getLogger("textwire.web")

RETRY_AFTER_SECONDS = 5
"""What a 503 asks a caller to wait: about what a PostgreSQL restart takes."""


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


def database_unavailable(exc: Exception) -> Response:
    """``503`` with ``Retry-After`` when the database failed the request.

    Nothing was stored, so the caller must not take it as done (a 200 would
    tell Twilio the message was received); a 500 would read as a bug. One
    log line, no traceback: during an outage every request ends here.
    """
    cause = exc.__cause__ if isinstance(exc, StorageError) else exc
    # The first line of the driver's message says why (refused, no such
    # table); the lines after it hold the SQL. Bound values are never in it:
    # the engines hide them (hide_parameters).
    why = str(cause or exc).strip().splitlines()
    logger.error(
        "%s %s: database unavailable (%s: %s); answered 503",
        request.method,
        request.path,
        (cause or exc).__class__.__name__,
        why[0][:300] if why else "no detail",
    )
    response = Response(
        "503 Service Unavailable: the database is not answering, nothing was "
        "stored; try again shortly\n",
        status=503,
        content_type="text/plain; charset=utf-8",
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def register_database_errors(target: Flask | Blueprint) -> None:
    """Answer :func:`database_unavailable` for ``StorageError`` and for the
    SQLAlchemy driver errors that could escape the store's own wrapping."""
    target.register_error_handler(StorageError, database_unavailable)
    target.register_error_handler(DBAPIError, database_unavailable)

"""Blueprint ``textwire_health``: liveness with a database check."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from werkzeug.exceptions import HTTPException

from textwire import __version__
from textwire.errors import StorageError
from textwire.web.errors import plain_error
from textwire.web.runtime import current_runtime

__all__ = ["bp"]

bp = Blueprint("textwire_health", __name__)
bp.register_error_handler(HTTPException, plain_error)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    rt = current_runtime()
    try:
        rt.store.check()
    except StorageError as exc:
        return jsonify(status="error", database=str(exc), version=__version__), 503
    return jsonify(status="ok", database="ok", version=__version__), 200

"""Blueprint ``textwire_metrics``: ``GET /metrics`` in Prometheus' text format.

With ``TEXTWIRE_METRICS_TOKEN`` set, a scrape must carry
``Authorization: Bearer <token>`` (metrics reveal how much traffic a number
gets); without it the route is open, like ``/healthz``.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from textwire.metrics import CONTENT_TYPE, render
from textwire.web.errors import plain_error
from textwire.web.runtime import current_runtime

__all__ = ["bp"]

bp = Blueprint("textwire_metrics", __name__)
bp.register_error_handler(HTTPException, plain_error)


def _authorized(token: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


@bp.get("/metrics")
def metrics() -> Response:
    rt = current_runtime()
    token = rt.settings.metrics_token
    if token and not _authorized(token):
        return Response(
            "401 Unauthorized: /metrics needs Authorization: Bearer "
            "<TEXTWIRE_METRICS_TOKEN>\n",
            status=401,
            content_type="text/plain; charset=utf-8",
            headers={"WWW-Authenticate": 'Bearer realm="textwire metrics"'},
        )
    response = Response(render(rt.store), content_type=CONTENT_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response

"""Twilio's paging of list resources (twilio-facts §1.6).

``PageSize`` (default 50, at most 1000), ``Page``, ``PageToken``, and the
``first_page_uri`` / ``next_page_uri`` / ``previous_page_uri`` fields the
twilio client follows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode

from flask import Response, jsonify, request

from textwire.sandbox.api.errors import bad_request

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "page", "page_int"]

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_int(name: str, default: int, low: int, high: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be a whole number, not {raw!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise bad_request(f"{name} must be {bound}, not {value}")
    return value


def page(
    items: Sequence[T],
    *,
    key: str,
    sid_of: Callable[[T], str],
    render: Callable[[T], dict[str, Any]],
    filters: Iterable[tuple[str, str]] = (),
) -> Response:
    """One page of a list resource, with Twilio's paging fields.

    ``PageToken`` is a cursor (``PA<sid>``: after that item, ``PB<sid>``:
    before it), so pages stay consistent while new messages arrive at the
    head of the list; without one, ``Page × PageSize`` is the offset.
    """
    page_size = page_int("PageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    page = page_int("Page", 0, 0)
    token = request.args.get("PageToken") or None
    start = page * page_size
    if token and len(token) > 2:
        sids = [sid_of(item) for item in items]
        anchor = token[2:]
        if anchor in sids:
            index = sids.index(anchor)
            if token.startswith("PA"):
                start = index + 1
            elif token.startswith("PB"):
                start = max(index - page_size, 0)
    chunk = list(items[start : start + page_size])
    fixed = list(filters)

    def uri(number: int, page_token: str | None = None) -> str:
        pairs = [*fixed, ("PageSize", str(page_size)), ("Page", str(number))]
        if page_token:
            pairs.append(("PageToken", page_token))
        return f"{request.path}?{urlencode(pairs)}"

    next_uri = None
    if chunk and start + len(chunk) < len(items):
        next_uri = uri(page + 1, "PA" + sid_of(chunk[-1]))
    previous_uri = None
    if page > 0:
        previous_uri = uri(page - 1, "PB" + sid_of(chunk[0]) if chunk else None)
    body: dict[str, Any] = {
        key: [render(item) for item in chunk],
        "end": start + max(len(chunk) - 1, 0),
        "first_page_uri": uri(0),
        "next_page_uri": next_uri,
        "page": page,
        "page_size": page_size,
        "previous_page_uri": previous_uri,
        "start": start,
        "uri": uri(page, token),
    }
    return jsonify(body)

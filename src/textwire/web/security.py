"""X-Twilio-Signature: which URL Twilio signed, and whether the signature holds."""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from flask import Request
from twilio.request_validator import RequestValidator
from werkzeug.exceptions import BadRequest

__all__ = [
    "InvalidForwardedHeader",
    "public_base_url",
    "signed_url",
    "verify_signature",
]

# What may stand between "://" and the path: no userinfo, path, query,
# whitespace or control characters (the host and port are parsed after).
_NETLOC = re.compile(r"[^\x00-\x20\x7f/?#@\\]+")


class InvalidForwardedHeader(BadRequest):
    """X-Forwarded-Proto / -Host (or Host) cannot be part of a URL.

    A 400 where it reaches a view; the signature check turns it into the
    usual 403 and its diagnostic.
    """


logger = logging.getLogger("textwire.web")


def _first(value: str | None) -> str | None:
    if not value:
        return None
    return value.split(",")[0].strip() or None


def public_base_url(request: Request, configured: str | None) -> str:
    """The base URL Twilio uses to reach this app.

    ``TEXTWIRE_PUBLIC_URL`` when set; otherwise the request's own, with the
    scheme and host a proxy or tunnel (ngrok) reports in X-Forwarded-Proto and
    X-Forwarded-Host, because Twilio signs the public URL, not ours.

    Raises:
        InvalidForwardedHeader: the scheme is not http(s), or the host is not
            ``host[:port]`` (``x:99999``, ``[``, ``x:abc``): there is no URL.
    """
    if configured:
        return configured.rstrip("/")
    forwarded_proto = _first(request.headers.get("X-Forwarded-Proto"))
    scheme = (forwarded_proto or request.scheme).lower()
    forwarded_host = _first(request.headers.get("X-Forwarded-Host"))
    host = forwarded_host or request.host
    source = "X-Forwarded-Host" if forwarded_host else "Host"
    if scheme not in ("http", "https"):
        raise InvalidForwardedHeader(
            f"X-Forwarded-Proto {_shown(scheme)} is not http or https"
        )
    if not _is_host(host):
        raise InvalidForwardedHeader(
            f"{source} {_shown(host)} is not a host or host:port"
        )
    return f"{scheme}://{host}{request.script_root}"


def _is_host(host: str) -> bool:
    if not _NETLOC.fullmatch(host):
        return False
    try:
        parts = urlsplit(f"http://{host}")
        parts.port  # noqa: B018 - raises ValueError for x:abc, x:99999
    except ValueError:  # also "[" and "[::1": not a bracketed IPv6 address
        return False
    return bool(parts.hostname)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


def signed_url(request: Request, configured: str | None) -> str:
    url = public_base_url(request, configured) + request.path
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    return url


def verify_signature(
    request: Request, auth_token: str, configured_public_url: str | None
) -> bool:
    """Check X-Twilio-Signature; log why and how to fix it when it fails."""
    try:
        url = signed_url(request, configured_public_url)
    except InvalidForwardedHeader as exc:
        logger.warning(
            "rejected %s %s: %s, so there is no URL to check the signature "
            "against; set TEXTWIRE_PUBLIC_URL to the exact base URL configured "
            "in Twilio, or have the proxy send its public host",
            request.method,
            request.path,
            exc.description,
        )
        return False
    signature = request.headers.get("X-Twilio-Signature", "")
    params: Mapping[str, str] = request.form
    if signature:
        validator = RequestValidator(auth_token)
        # One HMAC for the URL as Twilio calls it; the validator's own check
        # (the URL with and without its port, other algorithms) only when
        # that one does not match.
        expected = validator.compute_signature(url, params)
        if hmac.compare_digest(expected.encode(), signature.encode()):
            return True
        if validator.validate(url, params, signature):
            return True
    hint = (
        "the signature was computed for another URL or with another auth token: "
        "set TEXTWIRE_PUBLIC_URL to the exact base URL configured in Twilio "
        "(e.g. your https ngrok URL) and check TWILIO_AUTH_TOKEN is the primary token"
        if signature
        else "no X-Twilio-Signature header: the request did not come from Twilio"
    )
    logger.warning(
        "rejected %s %s: %s signature checked against URL %s; %s",
        request.method,
        request.path,
        "invalid" if signature else "missing",
        url,
        hint,
    )
    return False

"""X-Twilio-Signature: which URL Twilio signed, and whether the signature holds."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping

from flask import Request
from twilio.request_validator import RequestValidator

__all__ = ["public_base_url", "signed_url", "verify_signature"]

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
    """
    if configured:
        return configured.rstrip("/")
    scheme = _first(request.headers.get("X-Forwarded-Proto")) or request.scheme
    host = _first(request.headers.get("X-Forwarded-Host")) or request.host
    return f"{scheme}://{host}{request.script_root}"


def signed_url(request: Request, configured: str | None) -> str:
    url = public_base_url(request, configured) + request.path
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    return url


def verify_signature(
    request: Request, auth_token: str, configured_public_url: str | None
) -> bool:
    """Check X-Twilio-Signature; log why and how to fix it when it fails."""
    url = signed_url(request, configured_public_url)
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

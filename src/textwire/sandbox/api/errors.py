"""Twilio's JSON error body, and the error handlers of the API blueprint."""

from __future__ import annotations

from flask import Response, jsonify, request
from werkzeug.exceptions import HTTPException

from textwire.sandbox import rules

__all__ = ["TwilioApiError", "bad_request", "http_error", "not_found", "twilio_error"]

# The Twilio code of an HTTP error the API answers without a more precise one.
_GENERIC_CODES = {400: 20001, 404: 20404, 405: 20004, 413: 20001, 500: 20500}


class TwilioApiError(Exception):
    """An error answered in Twilio's shape ``{code, message, more_info, status}``
    (twilio-facts §1.5)."""

    def __init__(
        self,
        code: int,
        message: str | None = None,
        *,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        text = message or rules.error_title(code)
        super().__init__(text)
        self.code = code
        self.message = text
        self.status = status
        self.headers = headers or {}

    def response(self) -> Response:
        body = {
            "code": self.code,
            "message": self.message,
            "more_info": rules.more_info_url(self.code),
            "status": self.status,
        }
        response = jsonify(body)
        response.status_code = self.status
        for name, value in self.headers.items():
            response.headers[name] = value
        return response


def not_found() -> TwilioApiError:
    """Twilio's 404 (20404) for the requested path."""
    return TwilioApiError(
        20404, f"The requested resource {request.path} was not found", status=404
    )


def bad_request(message: str) -> TwilioApiError:
    """A 400 for a parameter error Twilio has no documented code for."""
    return TwilioApiError(20001, message)


def twilio_error(exc: TwilioApiError) -> Response:
    return exc.response()


def http_error(exc: HTTPException) -> Response:
    """Werkzeug's own errors (405, 413 ...) in Twilio's shape."""
    status = exc.code or 500
    code = _GENERIC_CODES.get(status, 20001 if status < 500 else 20500)
    return TwilioApiError(code, exc.description or exc.name, status=status).response()

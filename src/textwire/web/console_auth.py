"""The operator console's sessions: password, signed cookie, CSRF, login throttle.

* The password is kept only as a hash (``TEXTWIRE_CONSOLE_PASSWORD_HASH``, or
  the hash of ``TEXTWIRE_CONSOLE_PASSWORD`` made at start) and checked with
  ``werkzeug.security``.
* A session is a cookie of its own (``textwire_console``, path ``/console``),
  signed and dated with ``itsdangerous``: ``HttpOnly``, ``SameSite=Lax``,
  ``Secure`` when the public URL is https. It holds the operator's name and
  a CSRF token; nothing else is kept on the server. Its key derives from the
  password and the auth token, so every web process accepts it, and a new
  password ends every session.
* Every POST carries the session's CSRF token (a form field, or the
  ``X-CSRF-Token`` header of the reply endpoint); one without it is 403.
* Failed logins are counted per address in the database (every process
  shares the count): five in a burst, then one more every twelve seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import threading
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.security import check_password_hash, generate_password_hash

from textwire.config import Settings
from textwire.errors import ConfigError

__all__ = [
    "COOKIE",
    "LOGIN_TRIES_PER_MINUTE",
    "SESSION_SECONDS",
    "ConsoleAuth",
    "Session",
]

COOKIE = "textwire_console"
SESSION_SECONDS = 12 * 3600
"""A login lasts this long."""
LOGIN_TRIES_PER_MINUTE = 5
"""Failed logins allowed per address and minute."""
NAME_MAX = 64


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    """What the cookie says: the operator (``None``: not logged in) and the
    CSRF token of every form."""

    csrf: str
    operator: str | None = None


class ConsoleAuth:
    """Checks passwords and reads and writes sessions, for one app.

    Args:
        settings: ``console_password`` / ``console_password_hash``, the auth
            token (part of the signing key) and the public URL (https: the
            cookie is ``Secure``).
        secure: force the ``Secure`` flag (``None``: from the public URL).
    """

    def __init__(self, settings: Settings, *, secure: bool | None = None) -> None:
        secret = settings.console_password_hash or settings.console_password
        if not secret:
            raise ConfigError(
                "the console needs TEXTWIRE_CONSOLE_PASSWORD_HASH or "
                "TEXTWIRE_CONSOLE_PASSWORD"
            )
        self._hash = settings.console_password_hash or generate_password_hash(secret)
        key = hashlib.sha256(
            b"textwire console session\0"
            + secret.encode()
            + b"\0"
            + (settings.twilio_auth_token or "").encode()
        ).digest()
        self._serializer = URLSafeTimedSerializer(key, salt="textwire-console")
        public = settings.public_url or ""
        self.secure = public.startswith("https://") if secure is None else secure
        self.stopping = threading.Event()

    def check_password(self, password: str) -> bool:
        return bool(password) and check_password_hash(self._hash, password)

    # -- the cookie ----------------------------------------------------------

    def load(self, raw: str | None) -> Session | None:
        """The session a cookie holds, if it is ours and not expired."""
        if not raw:
            return None
        try:
            data: Any = self._serializer.loads(raw, max_age=SESSION_SECONDS)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        operator = data.get("n")
        return Session(
            csrf=data["c"], operator=operator if isinstance(operator, str) else None
        )

    def dump(self, session: Session) -> str:
        data: dict[str, str] = {"c": session.csrf}
        if session.operator is not None:
            data["n"] = session.operator
        return self._serializer.dumps(data)

    def cookie_options(self) -> dict[str, Any]:
        return {
            "max_age": SESSION_SECONDS,
            "path": "/console",
            "httponly": True,
            "samesite": "Lax",
            "secure": self.secure,
        }

    @staticmethod
    def new_session(operator: str | None = None) -> Session:
        """A fresh session (a new CSRF token: a login never keeps the old one)."""
        return Session(csrf=secrets.token_urlsafe(32), operator=operator)

    @staticmethod
    def csrf_ok(session: Session | None, token: str | None) -> bool:
        if session is None or not token:
            return False
        return hmac.compare_digest(session.csrf.encode(), token.encode())


def clean_name(raw: str) -> str:
    """An operator's name as given at login, fit for the audit log: printable,
    one line, at most 64 characters."""
    text = "".join(ch for ch in raw if ch.isprintable()).strip()
    return text[:NAME_MAX]

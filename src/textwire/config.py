"""Settings: the one place that reads the environment.

``Settings.from_env()`` reads ``os.environ`` (and a ``.env`` file in the working
directory, when there is one), casts every value and fails with a ``ConfigError``
that names the variable. Everything else receives a ``Settings`` object.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import phonenumbers

from textwire.errors import ConfigError

__all__ = ["ReplyMode", "Settings"]

ReplyMode = Literal["rest", "twiml"]
"""How replies to an inbound message reach Twilio: ``rest`` (the outbox and the
send worker) or ``twiml`` (in the webhook's own answer)."""

DEFAULT_APOLOGY = "Sorry, something went wrong on our side. Please try again soon."

MAX_SEND_CONCURRENCY = 64
"""The most sends one worker process keeps in flight (its sending threads),
when ``TEXTWIRE_WORKER_CONCURRENCY`` is not set."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Typed configuration for every part of textwire.

    Build it with ``Settings.from_env()`` in programs, or directly in tests:
    ``Settings(database_url="sqlite:///t.db", twilio_auth_token="...")``.
    """

    # Twilio account and sender
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = dataclasses.field(default=None, repr=False)
    twilio_phone_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_url: str = "https://api.twilio.com"
    twilio_timeout: float = 10.0
    # Where Twilio reaches us; used for signatures, callbacks and media URLs
    public_url: str | None = None
    # Storage
    database_url: str = "sqlite:///textwire.db"
    # Phone numbers written without a country code are read in this region
    default_region: str = "US"
    # The bot, as module:attr
    bot: str | None = None
    # Webhook security and limits
    validate_signatures: bool = True
    max_request_bytes: int = 64 * 1024
    # `textwire run`: the one address whose X-Forwarded-Proto/-Host/-For
    # waitress believes (a proxy or tunnel agent on this machine by default;
    # "*" for any, None, or "none" in the environment, for none)
    trusted_proxy: str | None = "127.0.0.1"
    # Worker: handling the inbox. Handlers run in a pool of their own
    # (async def ones on the worker's event loop), each within the timeout.
    handler_concurrency: int = 32
    handler_timeout: float = 60.0
    # Worker: sending the outbox. worker_concurrency None: sized from the
    # sender's rate limit and the API latency the worker sees.
    max_send_attempts: int = 6
    backoff_base: float = 2.0
    backoff_cap: float = 300.0
    worker_poll_interval: float = 1.0
    worker_batch_size: int = 20
    worker_concurrency: int | None = None
    lease_seconds: float = 60.0
    # Per-sender pacing shared by all workers (segments per second; None: the
    # default for the kind of sender, see textwire.ratelimit)
    rate_limit: bool = True
    rate_limit_mps: float | None = None
    rate_limit_max_wait: float = 1.0
    # What a phone gets when a handler raises
    apology: str = DEFAULT_APOLOGY
    # How replies reach Twilio: "rest" (outbox + worker) or "twiml" (in the
    # webhook's answer; no retries, no reconciliation, no rate limit)
    reply_mode: ReplyMode = "rest"
    # Media: what to do for phones without MMS (link | drop | send), whether
    # private hosts are allowed in media URLs, and whether to HEAD-check them
    mms_fallback: str = "link"
    allow_private_media: bool = False
    probe_media: bool = False
    # textwire dev: the ngrok agent's authtoken (NGROK_AUTHTOKEN) and an
    # optional reserved domain for a stable URL (TEXTWIRE_NGROK_DOMAIN)
    ngrok_authtoken: str | None = dataclasses.field(default=None, repr=False)
    ngrok_domain: str | None = None
    # GET /metrics: when set, scrapes must send "Authorization: Bearer <token>"
    metrics_token: str | None = dataclasses.field(default=None, repr=False)
    # The operator console at /console: on when a password (or its hash, from
    # `textwire console hash-password`) is set, unless TEXTWIRE_CONSOLE=false.
    console: bool | None = None
    console_password: str | None = dataclasses.field(default=None, repr=False)
    console_password_hash: str | None = dataclasses.field(default=None, repr=False)
    # Seconds after the handoff (or the operator's last reply) when a contact
    # handed to a person goes back to the bot; 0: only "back to the bot" does.
    handoff_timeout: float = 86400.0
    # Inbound media (ctx.fetch_media): where copies are kept (a folder, or an
    # fsspec URL such as s3://bucket/prefix; "off" keeps none), the largest
    # file fetched, the time a fetch may take, and whether to delete the
    # file from Twilio once copied.
    media_store: str = "textwire-media"
    media_max_bytes: int = 10 * 1024 * 1024
    media_timeout: float = 15.0
    delete_media_after_copy: bool = False
    # Quiet hours in the recipient's local time ("21:00-09:00"; off when
    # unset): scheduled and broadcast messages wait for them to end, replies
    # never do (textwire.quiet)
    quiet_hours: str | None = None

    def __post_init__(self) -> None:
        if self.public_url is not None:
            object.__setattr__(self, "public_url", _check_url(self.public_url))
        object.__setattr__(
            self, "twilio_api_url", _check_url(self.twilio_api_url).rstrip("/")
        )
        region = self.default_region.upper()
        if (
            len(region) != 2
            or not region.isalpha()
            or region not in phonenumbers.SUPPORTED_REGIONS
        ):
            raise ConfigError(
                f"TEXTWIRE_DEFAULT_REGION must be a two-letter region code such as "
                f"US or GB, not {self.default_region!r}"
            )
        object.__setattr__(self, "default_region", region)
        for name in (
            "max_send_attempts",
            "worker_batch_size",
            "worker_concurrency",
            "handler_concurrency",
        ):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{_env_name(name)} must be at least 1")
        if self.handler_concurrency > 1024:
            raise ConfigError("TEXTWIRE_HANDLER_CONCURRENCY must be at most 1024")
        if self.rate_limit_mps is not None and self.rate_limit_mps <= 0:
            raise ConfigError("TEXTWIRE_RATE_LIMIT_MPS must be greater than 0")
        if self.rate_limit_max_wait < 0:
            raise ConfigError("TEXTWIRE_RATE_LIMIT_MAX_WAIT must not be negative")
        for name in (
            "twilio_timeout",
            "worker_poll_interval",
            "lease_seconds",
            "handler_timeout",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{_env_name(name)} must be greater than 0")
        object.__setattr__(self, "trusted_proxy", _check_proxy(self.trusted_proxy))
        if self.max_request_bytes < 1024:
            raise ConfigError("TEXTWIRE_MAX_REQUEST_BYTES must be at least 1024")
        object.__setattr__(self, "reply_mode", str(self.reply_mode).strip().lower())
        if self.reply_mode not in ("rest", "twiml"):
            raise ConfigError(
                f"TEXTWIRE_REPLY_MODE must be rest or twiml, not {self.reply_mode!r}"
            )
        if self.ngrok_domain is not None:
            object.__setattr__(self, "ngrok_domain", _check_domain(self.ngrok_domain))
        _check_console(self)
        if self.handoff_timeout < 0:
            raise ConfigError("TEXTWIRE_HANDOFF_TIMEOUT must not be negative")
        if self.media_max_bytes < 1:
            raise ConfigError("TEXTWIRE_MEDIA_MAX_BYTES must be at least 1")
        if self.media_timeout <= 0:
            raise ConfigError("TEXTWIRE_MEDIA_TIMEOUT must be greater than 0")
        self._check_quiet_hours()
        if self.mms_fallback not in ("link", "drop", "send"):
            raise ConfigError(
                "TEXTWIRE_MMS_FALLBACK must be link, drop or send, not "
                f"{self.mms_fallback!r}"
            )

    def _check_quiet_hours(self) -> None:
        from textwire.quiet import QuietHours

        try:
            quiet = QuietHours.parse_optional(self.quiet_hours)
        except ValueError as exc:
            raise ConfigError(f"TEXTWIRE_QUIET_HOURS: {exc}") from None
        object.__setattr__(self, "quiet_hours", str(quiet) if quiet else None)

    @property
    def console_enabled(self) -> bool:
        """Whether ``/console`` is served: ``TEXTWIRE_CONSOLE`` when set, else
        whenever a console password (or its hash) is."""
        if self.console is not None:
            return self.console
        return bool(self.console_password or self.console_password_hash)

    @property
    def has_twilio_credentials(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        env_file: str | Path | None = ".env",
    ) -> Settings:
        """Read settings from the environment, then a ``.env`` file, then defaults.

        Args:
            environ: the variables to read; ``os.environ`` when omitted.
            env_file: a dotenv file whose values fill in what ``environ`` lacks;
                ``None`` to read none.

        Raises:
            ConfigError: a value that cannot be cast, naming the variable.
        """
        env: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            from dotenv import dotenv_values

            env.update(
                {k: v for k, v in dotenv_values(env_file).items() if v is not None}
            )
        env.update(os.environ if environ is None else environ)

        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            var = _env_name(field.name)
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            values[field.name] = _cast(var, raw.strip(), field.type)
        return cls(**values)


def _check_console(settings: Settings) -> None:
    if settings.console and not (
        settings.console_password or settings.console_password_hash
    ):
        raise ConfigError(
            "TEXTWIRE_CONSOLE is on but no password is set: set "
            "TEXTWIRE_CONSOLE_PASSWORD_HASH (from `textwire console hash-password`) "
            "or TEXTWIRE_CONSOLE_PASSWORD"
        )
    hashed = settings.console_password_hash
    if hashed is not None and not hashed.startswith(("scrypt:", "pbkdf2:")):
        raise ConfigError(
            "TEXTWIRE_CONSOLE_PASSWORD_HASH is not a password hash: make one with "
            "`textwire console hash-password`"
        )


def _env_name(field: str) -> str:
    if field == "ngrok_authtoken":
        return "NGROK_AUTHTOKEN"  # the name ngrok's own agent and SDK read
    if field.startswith("twilio_") and field not in (
        "twilio_api_url",
        "twilio_timeout",
    ):
        return field.upper()
    return "TEXTWIRE_" + field.upper()


def _cast(var: str, raw: str, kind: object) -> Any:
    kind = str(kind)
    if kind.startswith("bool"):
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{var} must be true or false, not {raw!r}")
    if kind.startswith("int"):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{var} must be a whole number, not {raw!r}") from None
    if kind.startswith("float"):
        try:
            number = float(raw)
        except ValueError:
            raise ConfigError(f"{var} must be a number, not {raw!r}") from None
        if not math.isfinite(number):  # nan/inf pass every later range check
            raise ConfigError(f"{var} must be a finite number, not {raw!r}")
        return number
    return raw


def _check_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"{url!r} is not an absolute http(s) URL (expected e.g. https://example.com)"
        )
    return url.strip().rstrip("/")


def _check_proxy(raw: str | None) -> str | None:
    """An IP address as waitress compares it (its text form), ``*`` or None.

    Waitress compares the peer's address as text, so a name or a network
    would never match: refuse them rather than trust nothing silently.
    """
    if raw is None or raw.strip().lower() in ("", "none", "off", "false"):
        return None
    text = raw.strip()
    if text == "*":
        return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ConfigError(
            "TEXTWIRE_TRUSTED_PROXY must be the IP address of the proxy in front "
            f"of `textwire run` (e.g. 127.0.0.1), * or none, not {raw!r}"
        ) from None


def _check_domain(raw: str) -> str:
    """A bare host name (``abc.ngrok.app``); a pasted URL is cut down to its host."""
    text = raw.strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.path.strip("/") or parts.query or not parts.hostname:
            raise ConfigError(
                f"TEXTWIRE_NGROK_DOMAIN must be a domain such as abc.ngrok.app, "
                f"not {raw!r}"
            )
        text = parts.hostname
    text = text.rstrip("/").lower()
    labels = text.split(".")
    if len(labels) < 2 or not all(
        label and len(label) <= 63 and label.replace("-", "").isalnum()
        for label in labels
    ):
        raise ConfigError(
            f"TEXTWIRE_NGROK_DOMAIN must be a domain such as abc.ngrok.app, not {raw!r}"
        )
    return text

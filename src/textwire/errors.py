"""textwire exceptions: one tree, and whether to retry is a type.

TextwireError
├── ConfigError                 # bad or missing setting, bot that cannot be loaded
│   └── DevSetupError           # `textwire dev`: a line and a hint (.hint)
│       ├── TunnelError         # ngrok refused the token / domain, or is missing
│       └── NumberSetupError    # credentials, number not in the account, no SMS
├── RegistrationError           # handler/router registered after the first dispatch
├── InvalidPhoneNumber          # (also ValueError) a number normalize() cannot accept
├── InvalidMessage              # (also ValueError) a reply over one of Twilio's limits
├── RecipientOptedOut           # the recipient replied STOP: refused, no API call
├── InvalidSendTime             # (also ValueError) a send time in the past, too far
│                               #   ahead, or one that cannot be read
├── BroadcastError              # a broadcast's file, template or state refuses it
├── WebhookError
│   ├── InvalidSignature        # missing or forged X-Twilio-Signature
│   └── MalformedWebhook        # a form Twilio would never send
├── SendError                   # a send that did not reach Twilio as intended
│   ├── PermanentSendError      # never retried: invalid number, opted out, blocked
│   ├── TemporarySendError      # retried with backoff: 5xx, connection refused
│   │   └── RateLimited         # HTTP 429; .retry_after in seconds, when Twilio said
│   └── AmbiguousSendError      # may or may not have reached Twilio: reconcile first
├── MediaFetchError             # an inbound media file could not be fetched (.status)
│   └── MediaTooLarge           # over TEXTWIRE_MEDIA_MAX_BYTES: not fetched further
└── StorageError

Messages never carry full phone numbers, message bodies or tokens.
"""

from __future__ import annotations

__all__ = [
    "AmbiguousSendError",
    "BroadcastError",
    "ConfigError",
    "DevSetupError",
    "InvalidMessage",
    "InvalidPhoneNumber",
    "InvalidSendTime",
    "InvalidSignature",
    "MalformedWebhook",
    "MediaFetchError",
    "MediaTooLarge",
    "NumberSetupError",
    "PermanentSendError",
    "RateLimited",
    "RecipientOptedOut",
    "RegistrationError",
    "SendError",
    "StorageError",
    "TemporarySendError",
    "TextwireError",
    "TunnelError",
    "WebhookError",
]


class TextwireError(Exception):
    """Base class of every error textwire raises on purpose."""


class ConfigError(TextwireError):
    """A setting is missing or malformed, or the bot cannot be loaded."""


class DevSetupError(ConfigError):
    """Going live (``textwire dev``) cannot go on: one line saying what, and a hint.

    Attributes:
        message: what went wrong, in one line.
        hint: what to do about it (may be empty).
    """

    def __init__(self, message: str, *, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(message + (f"\n  hint: {hint}" if hint else ""))


class TunnelError(DevSetupError):
    """The ngrok tunnel could not be opened (token, domain, session limit, SDK)."""


class NumberSetupError(DevSetupError):
    """Twilio refused the credentials, or the number is missing or cannot do SMS.

    Attributes:
        code: Twilio's error code when Twilio gave one (20003 …).
    """

    def __init__(self, message: str, *, hint: str = "", code: int | None = None):
        super().__init__(message, hint=hint)
        self.code = code


class RegistrationError(TextwireError):
    """Setup (routers, handlers, hooks) changed after the bot started dispatching."""


class InvalidPhoneNumber(TextwireError, ValueError):
    """A phone number that cannot be read as a valid E.164 number.

    Attributes:
        raw: the input exactly as given.
        reason: why it was rejected, in words a person can act on.
    """

    def __init__(self, raw: object, reason: str) -> None:
        self.raw = raw
        self.reason = reason
        super().__init__(f"invalid phone number {_masked(raw)}: {reason}")


def _masked(raw: object) -> str:
    # str(exc) ends up in logs: show the shape of the input, not the number.
    text = repr(raw)
    if isinstance(raw, str) and len(raw) > 6:
        text = repr(raw[:4] + "***" + raw[-2:])
    return text


class InvalidMessage(TextwireError, ValueError):
    """A message that breaks one of Twilio's limits (body length, media count, URL)."""


class RecipientOptedOut(TextwireError):
    """The recipient opted out (replied STOP); nothing is sent until START."""


class InvalidSendTime(TextwireError, ValueError):
    """A send time (``--at``, ``ctx.schedule(at=...)``) that cannot be used:
    unreadable, in the past, or more than a year ahead."""


class BroadcastError(TextwireError):
    """A broadcast that cannot be created or changed: a file that is not CSV,
    no number column, a template that fails everywhere, an unknown ID, or a
    state that forbids the change (resuming a cancelled one)."""


class WebhookError(TextwireError):
    """An incoming webhook that must be refused."""


class InvalidSignature(WebhookError):
    """The X-Twilio-Signature header is missing or does not match."""


class MalformedWebhook(WebhookError):
    """The webhook form lacks a required field or holds an impossible value."""


class SendError(TextwireError):
    """Sending one message failed.

    Attributes:
        code: Twilio's error code (21211, 20429 …) when Twilio gave one.
        status: the HTTP status of Twilio's answer, when there was one.
        reason: a readable explanation and what to do about it.
    """

    def __init__(
        self, reason: str, *, code: int | None = None, status: int | None = None
    ) -> None:
        self.reason = reason
        self.code = code
        self.status = status
        prefix = f"[{code}] " if code is not None else ""
        super().__init__(prefix + reason)


class PermanentSendError(SendError):
    """Retrying cannot help: the message is marked failed at once."""


class TemporarySendError(SendError):
    """The request did not reach Twilio (or Twilio refused it for now): retry later."""


class RateLimited(TemporarySendError):
    """Twilio answered 429. ``retry_after`` (seconds) wins over computed backoff."""

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        code: int | None = None,
        status: int | None = 429,
    ) -> None:
        super().__init__(reason, code=code, status=status)
        self.retry_after = retry_after


class AmbiguousSendError(SendError):
    """The request went out but no answer came back: Twilio may have the message."""


class MediaFetchError(TextwireError):
    """An inbound message's media file could not be fetched (``ctx.fetch_media``).

    Attributes:
        status: the HTTP status of the answer, when there was one (401: the
            credentials were refused; 404: Twilio deleted the file).
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class MediaTooLarge(MediaFetchError):
    """The file is larger than ``TEXTWIRE_MEDIA_MAX_BYTES``; its download stopped."""


class StorageError(TextwireError):
    """The database is unreachable, not migrated, or refused a write."""

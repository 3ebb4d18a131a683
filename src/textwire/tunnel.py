"""Going live: an ngrok tunnel, and a Twilio number's webhooks pointed at it.

* ``open_tunnel`` opens an https tunnel to the local server with the official
  ngrok agent SDK (``pip install 'textwire[ngrok]'``). The SDK is called
  through one seam, a ``TunnelOpener`` (``ngrok_opener`` by default), so tests
  replace it; every error of the SDK becomes a ``TunnelError`` with a hint.
* ``find_number`` / ``point_number`` / ``restore_number`` work on the number
  through Twilio's IncomingPhoneNumbers API: ``point_number`` remembers the
  number's webhooks (in a ``DevStateFile`` *before* changing anything) and
  sets ``SmsUrl`` to ``<public URL>/twilio/sms`` (POST); ``restore_number``
  puts them back. A run that died leaves the file behind, so the next one can
  offer to restore.

Twilio's errors become a ``NumberSetupError``: wrong credentials (20003), a
number the account does not have (the ones it has are listed, masked), a
number without SMS.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from textwire import codes
from textwire.config import Settings
from textwire.errors import (
    DevSetupError,
    InvalidPhoneNumber,
    NumberSetupError,
    TunnelError,
)
from textwire.phone import mask, normalize

__all__ = [
    "AUTHTOKEN_URL",
    "DEFAULT_STATE_PATH",
    "INSTALL_HINT",
    "STATUS_PATH",
    "WEBHOOK_PATH",
    "DevStateFile",
    "IncomingNumber",
    "NumberWebhooks",
    "OpenedTunnel",
    "RestoreOutcome",
    "SavedNumber",
    "Tunnel",
    "TunnelOpener",
    "connect_twilio",
    "find_number",
    "local_address",
    "map_ngrok_error",
    "ngrok_opener",
    "open_tunnel",
    "point_number",
    "pretty_number",
    "process_alive",
    "require_sms",
    "restore_number",
    "twilio_setup_error",
]

logger = logging.getLogger("textwire.tunnel")

WEBHOOK_PATH = "/twilio/sms"
"""Where Twilio posts inbound messages, under the public URL."""
STATUS_PATH = "/twilio/status"
"""Where each message's status callbacks go, under the public URL."""
DEFAULT_STATE_PATH = Path(".textwire") / "dev-state.json"
"""Where ``textwire dev`` keeps a number's previous webhooks while it runs."""
AUTHTOKEN_URL = "https://dashboard.ngrok.com/get-started/your-authtoken"
INSTALL_HINT = (
    "install it with `pip install 'textwire[ngrok]'` (or `pip install ngrok`), "
    "or pass --public-url URL with a tunnel of your own"
)
_CONSOLE_NUMBERS = (
    "https://console.twilio.com/us1/develop/phone-numbers/manage/incoming"
)

T = TypeVar("T")


# -- the tunnel ------------------------------------------------------------------


class Tunnel(Protocol):
    """An open tunnel: its public URL, and how to close it."""

    @property
    def url(self) -> str: ...

    def close(self) -> None: ...


@dataclasses.dataclass
class OpenedTunnel:
    """A tunnel with a public ``url``; ``close()`` runs ``closer`` once."""

    url: str
    closer: Callable[[], None] | None = None

    def close(self) -> None:
        closer, self.closer = self.closer, None
        if closer is not None:
            closer()


class TunnelOpener(Protocol):
    """The seam to the ngrok SDK: forward to ``addr`` (``http://host:port``) and
    return the tunnel. May raise what the SDK raises; ``open_tunnel`` maps it."""

    def __call__(self, addr: str, *, authtoken: str, domain: str | None) -> Tunnel: ...


def ngrok_opener(addr: str, *, authtoken: str, domain: str | None) -> Tunnel:
    """Open an https tunnel with the ngrok agent SDK (``ngrok.forward``).

    Raises:
        ImportError: the ``ngrok`` package is not installed.
        ValueError: what ngrok-python raises for every failure, with
            ``args == (what, detail[, "ERR_NGROK_…"])``.
    """
    import ngrok

    # forward() drops None options: no domain means a random URL.
    listener = ngrok.forward(addr, authtoken=authtoken, domain=domain or None)
    url = str(listener.url())

    def close() -> None:
        try:
            ngrok.disconnect(url)
        except Exception as exc:  # the tunnel dies with the process anyway
            logger.warning("closing the ngrok tunnel failed: %s", exc)

    return OpenedTunnel(url, close)


def local_address(host: str, port: int) -> str:
    """The URL the tunnel forwards to: ``http://host:port``, where a wildcard
    host means this machine's loopback address."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def open_tunnel(
    *,
    host: str,
    port: int,
    authtoken: str | None,
    domain: str | None = None,
    opener: TunnelOpener | None = None,
) -> Tunnel:
    """Open a tunnel from the internet to ``host:port``.

    Raises:
        TunnelError: no authtoken, the SDK is missing, or ngrok refused (bad
            token, domain not yours, one session only …), with a hint.
    """
    if not authtoken:
        raise TunnelError(
            "NGROK_AUTHTOKEN is not set",
            hint=f"get yours at {AUTHTOKEN_URL} and put NGROK_AUTHTOKEN=… in "
            ".env, or pass --public-url URL with a tunnel of your own",
        )
    opener = opener or ngrok_opener
    try:
        tunnel = opener(local_address(host, port), authtoken=authtoken, domain=domain)
    except ImportError:
        raise TunnelError(
            "the ngrok agent SDK is not installed", hint=INSTALL_HINT
        ) from None
    except (ValueError, RuntimeError) as exc:
        raise map_ngrok_error(exc, authtoken=authtoken, domain=domain) from None
    return tunnel


_AUTH_CODES = {"ERR_NGROK_105", "ERR_NGROK_106", "ERR_NGROK_107", "ERR_NGROK_4018"}
_OLD_AGENT_CODES = {"ERR_NGROK_120", "ERR_NGROK_121"}


def map_ngrok_error(
    exc: BaseException, *, authtoken: str | None = None, domain: str | None = None
) -> TunnelError:
    """Turn what ngrok-python raised into a ``TunnelError`` with a hint.

    ngrok-python raises ``ValueError(what, detail)`` or, when ngrok's service
    answered with an error code, ``ValueError(what, detail, "ERR_NGROK_…")``:
    e.g. ``("failed to connect session", "The authtoken you specified …",
    "ERR_NGROK_105")``. The token is never repeated.
    """
    args = [str(a) for a in exc.args] or [type(exc).__name__]
    code = next((a.strip() for a in args if a.strip().startswith("ERR_NGROK_")), None)
    detail = args[1] if len(args) > 1 else args[0]
    if authtoken:
        detail = detail.replace(authtoken, "***")
    first_line = detail.strip().splitlines()[0] if detail.strip() else detail
    text = " ".join(args).lower()
    if code == "ERR_NGROK_108" or "simultaneous" in text:
        return TunnelError(
            "ngrok allows your account a limited number of agent sessions at a "
            "time, and they are in use",
            hint="stop the other ngrok agent (or textwire dev) — see "
            "https://dashboard.ngrok.com/agents — or pass --public-url URL",
        )
    if code in _AUTH_CODES or "authtoken" in text:
        return TunnelError(
            f"ngrok rejected NGROK_AUTHTOKEN: get yours at {AUTHTOKEN_URL}",
            hint="it is the agent authtoken (not an API key), without spaces; "
            "or pass --public-url URL with a tunnel of your own",
        )
    if code in _OLD_AGENT_CODES:
        return TunnelError(
            f"ngrok refused this agent version: {first_line}",
            hint="upgrade the SDK: `pip install -U ngrok`",
        )
    if domain and (
        "domain" in text or "hostname" in text or args[0] == "failed to start listener"
    ):
        return TunnelError(
            f"ngrok would not serve the domain {domain}: {first_line}"
            + (f" ({code})" if code else ""),
            hint="reserve it on https://dashboard.ngrok.com/domains (one static "
            "domain is free), or drop --domain / TEXTWIRE_NGROK_DOMAIN for a "
            "random URL",
        )
    if code is None and args[0] == "failed to connect session":
        return TunnelError(
            f"could not reach ngrok's service ({first_line})",
            hint="check the internet connection and any firewall (ngrok connects "
            "out on port 443), or pass --public-url URL with a tunnel of your own",
        )
    return TunnelError(
        f"ngrok failed: {first_line}" + (f" ({code})" if code else ""),
        hint=(
            f"see https://ngrok.com/docs/errors/{code.lower()}"
            if code
            else "or pass --public-url URL with a tunnel of your own"
        ),
    )


# -- the number ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class NumberWebhooks:
    """The messaging webhooks of a number (``""``: not set)."""

    sms_url: str = ""
    sms_method: str = "POST"
    sms_fallback_url: str = ""
    sms_fallback_method: str = "POST"
    status_callback: str = ""
    status_callback_method: str = "POST"
    sms_application_sid: str = ""

    @classmethod
    def from_resource(cls, resource: Any) -> NumberWebhooks:
        def text(name: str, default: str = "") -> str:
            value = getattr(resource, name, None)
            return str(value) if value else default

        return cls(
            sms_url=text("sms_url"),
            sms_method=text("sms_method", "POST").upper(),
            sms_fallback_url=text("sms_fallback_url"),
            sms_fallback_method=text("sms_fallback_method", "POST").upper(),
            status_callback=text("status_callback"),
            status_callback_method=text("status_callback_method", "POST").upper(),
            sms_application_sid=text("sms_application_sid"),
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NumberWebhooks:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: str(v or "") for k, v in data.items() if k in fields})


@dataclasses.dataclass(frozen=True, slots=True)
class IncomingNumber:
    """A phone number of the account (an IncomingPhoneNumber resource)."""

    sid: str
    phone_number: str
    friendly_name: str
    sms: bool
    mms: bool
    webhooks: NumberWebhooks

    @classmethod
    def from_resource(cls, resource: Any) -> IncomingNumber:
        caps = getattr(resource, "capabilities", None) or {}
        return cls(
            sid=str(resource.sid),
            phone_number=str(resource.phone_number),
            friendly_name=str(getattr(resource, "friendly_name", "") or ""),
            sms=_capable(caps, "sms"),
            mms=_capable(caps, "mms"),
            webhooks=NumberWebhooks.from_resource(resource),
        )


def _capable(caps: Any, name: str) -> bool:
    value = caps.get(name) if isinstance(caps, Mapping) else getattr(caps, name, None)
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


@dataclasses.dataclass(frozen=True, slots=True)
class SavedNumber:
    """What ``textwire dev`` changed on a number, and what it was before."""

    account_sid: str
    number_sid: str
    phone_number: str
    previous: NumberWebhooks
    webhook_url: str
    pid: int = dataclasses.field(default_factory=os.getpid)
    host: str = dataclasses.field(default_factory=socket.gethostname)
    saved_at: str = dataclasses.field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["version"] = 1
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SavedNumber:
        return cls(
            account_sid=str(data["account_sid"]),
            number_sid=str(data["number_sid"]),
            phone_number=str(data["phone_number"]),
            previous=NumberWebhooks.from_json(data["previous"]),
            webhook_url=str(data["webhook_url"]),
            pid=int(data.get("pid") or 0),
            host=str(data.get("host") or ""),
            saved_at=str(data.get("saved_at") or ""),
        )


class DevStateFile:
    """A small JSON file with the number's previous webhooks (``SavedNumber``).

    Written before the number is changed, removed after a clean restore: when
    it is there at start, the last run died without restoring.
    """

    def __init__(self, path: str | Path = DEFAULT_STATE_PATH) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"DevStateFile({str(self.path)!r})"

    def load(self) -> SavedNumber | None:
        """The saved record, or None when there is none.

        Raises:
            DevSetupError: the file cannot be read as a saved record.
        """
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DevSetupError(
                f"cannot read {self.path}: {exc.strerror or exc}",
                hint="fix its permissions or delete it",
            ) from None
        try:
            return SavedNumber.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise DevSetupError(
                f"{self.path} is not a textwire dev state file",
                hint="if you know the number's webhooks are as you want them, "
                "delete it",
            ) from None

    def save(self, saved: SavedNumber) -> None:
        """Write the record (atomically: a crash never leaves half a file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(saved.to_json(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (False where unknowable)."""
    if os.name != "posix" or pid <= 0:
        return False  # on Windows os.kill(pid, 0) would end the process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def twilio_setup_error(exc: BaseException, *, what: str, api_url: str) -> DevSetupError:
    """What the twilio SDK raised while doing ``what``, as one line and a hint."""
    from textwire.transports.twilio import map_twilio_error

    if isinstance(exc, DevSetupError):
        return exc
    error = map_twilio_error(exc)
    if error.code == 20003 or error.status == 401:
        return NumberSetupError(
            "Twilio rejected TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN (20003)",
            hint="copy both from https://console.twilio.com (Account Info): the "
            "live credentials of the account that owns the number, primary auth "
            "token, no stray spaces",
            code=20003,
        )
    if error.status is None:
        return NumberSetupError(
            f"could not reach Twilio's API at {api_url} to {what} "
            f"({type(exc).__name__})",
            hint="check the network connection"
            + ("" if "twilio.com" in api_url else " and TEXTWIRE_TWILIO_API_URL"),
        )
    reason = (
        codes.describe(error.code) if error.code is not None else f"HTTP {error.status}"
    )
    return NumberSetupError(
        f"Twilio refused to {what}: {reason}",
        code=error.code,
        hint="see https://www.twilio.com/docs/api/errors"
        + (f"/{error.code}" if error.code else ""),
    )


def _call(client: Any, what: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except Exception as exc:
        api_url = str(getattr(client.api, "base_url", "https://api.twilio.com"))
        raise twilio_setup_error(exc, what=what, api_url=api_url) from exc


def connect_twilio(settings: Settings) -> tuple[Any, Callable[[], None]]:
    """A twilio Client for the settings' account and API URL, and its closer.

    Raises:
        NumberSetupError: TWILIO_ACCOUNT_SID or TWILIO_AUTH_TOKEN not set.
    """
    from textwire.transports.twilio import build_client

    if not settings.has_twilio_credentials:
        raise NumberSetupError(
            "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set",
            hint="put them in .env (https://console.twilio.com, Account Info); "
            "to try a bot without Twilio: textwire sandbox",
        )
    client, http = build_client(
        settings.twilio_account_sid or "",
        settings.twilio_auth_token or "",
        api_url=settings.twilio_api_url,
        timeout=settings.twilio_timeout,
    )
    return client, http.close


def pretty_number(number: str) -> str:
    """``+14155550100`` → ``+1 415 555 0100``: easy to read and to type."""
    import phonenumbers

    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number
    formatted = phonenumbers.format_number(
        parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return formatted.replace("-", " ")


def find_number(
    client: Any, phone_number: str, *, region: str | None = None
) -> IncomingNumber:
    """The account's IncomingPhoneNumber for ``phone_number`` (any format).

    Raises:
        NumberSetupError: not a phone number, wrong credentials (20003), or the
            account has no such number (the numbers it has are named, masked).
    """
    try:
        e164 = normalize(phone_number, region)
    except InvalidPhoneNumber as exc:
        raise NumberSetupError(
            f"TWILIO_PHONE_NUMBER is not a phone number: {exc.reason}",
            hint="write it with its country code, e.g. +14155550100",
        ) from None
    found = _call(
        client,
        "look up the number",
        lambda: client.incoming_phone_numbers.list(phone_number=e164, limit=20),
    )
    for resource in found:
        if str(resource.phone_number) == e164:
            return IncomingNumber.from_resource(resource)
    others = _call(
        client,
        "list the account's numbers",
        lambda: client.incoming_phone_numbers.list(limit=20),
    )
    have = [mask(str(r.phone_number)) for r in others]
    account = str(getattr(client, "account_sid", "") or "")
    where = f"account {account}" if account else "this account"
    listing = f"it has {', '.join(have)}" if have else "it has no phone numbers at all"
    raise NumberSetupError(
        f"{mask(e164)} is not a number of {where}: {listing}",
        hint="set TWILIO_PHONE_NUMBER to one of the account's numbers (or use "
        f"the credentials of the account that owns it): {_CONSOLE_NUMBERS}",
    )


def require_sms(number: IncomingNumber) -> None:
    """Raise ``NumberSetupError`` unless the number can send and receive SMS."""
    if not number.sms:
        raise NumberSetupError(
            f"{mask(number.phone_number)} has no SMS capability (a voice-only "
            "number): it can neither receive texts nor reply",
            hint=f"use an SMS-capable number of the account: {_CONSOLE_NUMBERS}",
        )


def point_number(
    client: Any,
    number: IncomingNumber | str,
    public_url: str,
    *,
    status_callback: str | None = None,
    state_file: DevStateFile | None = None,
    region: str | None = None,
) -> NumberWebhooks:
    """Set the number's ``SmsUrl`` to ``public_url`` + ``/twilio/sms`` (POST).

    Args:
        number: the number (any format), or one ``find_number`` returned.
        status_callback: also set the number's ``StatusCallback`` to this URL
            (textwire's messages carry their own; the number's is left alone
            by default).
        state_file: where the previous webhooks are saved before anything
            changes.

    Returns:
        The webhooks the number had before.

    Raises:
        NumberSetupError: see ``find_number``; no SMS capability; Twilio
            refused the update.
    """
    if isinstance(number, str):
        number = find_number(client, number, region=region)
    require_sms(number)
    webhook = public_url.rstrip("/") + WEBHOOK_PATH
    previous = number.webhooks
    if state_file is not None:
        state_file.save(
            SavedNumber(
                account_sid=str(getattr(client, "account_sid", "") or ""),
                number_sid=number.sid,
                phone_number=number.phone_number,
                previous=previous,
                webhook_url=webhook,
            )
        )
    changes: dict[str, str] = {"sms_url": webhook, "sms_method": "POST"}
    if previous.sms_application_sid:
        # Twilio ignores SmsUrl while an application handles the number's SMS.
        changes["sms_application_sid"] = ""
    if status_callback is not None:
        changes["status_callback"] = status_callback
        changes["status_callback_method"] = "POST"
    updated = _call(
        client,
        "set the number's webhook",
        lambda: client.incoming_phone_numbers(number.sid).update(**changes),
    )
    now = str(getattr(updated, "sms_url", "") or "")
    if now != webhook:
        raise NumberSetupError(
            f"Twilio kept {mask(number.phone_number)}'s SmsUrl at {now or 'nothing'} "
            f"instead of {webhook}",
            hint="set it in the console and try again: " + _CONSOLE_NUMBERS,
        )
    return previous


@dataclasses.dataclass(frozen=True, slots=True)
class RestoreOutcome:
    """What ``restore_number`` did: ``restored``, or why not (``sms_url`` is the
    number's SmsUrl now)."""

    restored: bool
    sms_url: str
    reason: str = ""


def restore_number(
    client: Any, saved: SavedNumber, *, force: bool = False
) -> RestoreOutcome:
    """Put back the webhooks ``point_number`` replaced.

    Only while the number still points where textwire set it (unless
    ``force``): a webhook someone changed since is left alone.

    Raises:
        NumberSetupError: wrong credentials, or Twilio refused the update.
    """
    resource = _call(
        client,
        "read the number",
        lambda: client.incoming_phone_numbers(saved.number_sid).fetch(),
    )
    current = NumberWebhooks.from_resource(resource)
    if not force and current.sms_url != saved.webhook_url:
        return RestoreOutcome(
            False,
            current.sms_url,
            f"its SmsUrl was changed to {current.sms_url or 'nothing'} since; "
            "left as it is",
        )
    previous = saved.previous
    changes: dict[str, str] = {
        "sms_url": previous.sms_url,
        "sms_method": previous.sms_method or "POST",
        "sms_fallback_url": previous.sms_fallback_url,
        "sms_fallback_method": previous.sms_fallback_method or "POST",
        "status_callback": previous.status_callback,
        "status_callback_method": previous.status_callback_method or "POST",
    }
    if previous.sms_application_sid:
        changes["sms_application_sid"] = previous.sms_application_sid
    updated = _call(
        client,
        "restore the number's webhooks",
        lambda: client.incoming_phone_numbers(saved.number_sid).update(**changes),
    )
    return RestoreOutcome(True, str(getattr(updated, "sms_url", "") or ""))

"""TwilioTransport: one outbound message = one ``client.messages.create`` call.

Import it explicitly (``from textwire.transports.twilio import TwilioTransport``);
``textwire.transports`` itself never imports the twilio SDK.

Every failure becomes a typed ``SendError`` through ``map_twilio_error``:

* HTTP 429 / code 20429 → ``RateLimited`` (``retry_after`` from ``Retry-After``)
* HTTP 5xx → ``TemporarySendError``
* any other HTTP error (400, 401, 403, 404 …) → ``PermanentSendError`` with
  Twilio's ``code`` (21610 included: see ``codes.CODES[21610].opt_out``)
* could not connect (refused, DNS, connect timeout) → ``TemporarySendError``
* request written but no answer (read timeout, reset) → ``AmbiguousSendError``

Reasons are built from ``textwire.codes``, never from Twilio's message text,
which can quote the phone number.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from textwire import codes
from textwire.config import MAX_SEND_CONCURRENCY
from textwire.errors import (
    AmbiguousSendError,
    ConfigError,
    PermanentSendError,
    RateLimited,
    SendError,
    TemporarySendError,
)

if TYPE_CHECKING:
    from textwire.config import Settings

from textwire.transports.base import (
    OutboundMessage,
    SendReceipt,
    SentRecord,
    Transport,
)

__all__ = [
    "TwilioTransport",
    "build_client",
    "map_twilio_error",
    "parse_retry_after",
]

# twilio's HTTP client logs request URLs and query strings (phone numbers) at
# INFO. Quiet it unless the user has chosen a level for it themselves.
_sdk_logger = logging.getLogger("twilio.http_client")
if _sdk_logger.level == logging.NOTSET:
    _sdk_logger.setLevel(logging.WARNING)

STATUS_PATH = "/twilio/status"
"""Path of the status-callback endpoint, appended to ``public_url``."""

_FIND_SLACK = timedelta(seconds=60)
_FIND_PAGE_SIZE = 50
_FIND_LIMIT = 200

# Any non-empty mapping without TWILIO_* keys: ClientBase does
# ``environment or os.environ``, so an empty dict would still read os.environ
# (and a TWILIO_REGION / TWILIO_EDGE there would rewrite api_url's host).
_NO_ENVIRONMENT = {"TEXTWIRE_TWILIO_ENVIRONMENT": "ignored"}


_FORM = "application/x-www-form-urlencoded"


def _form_body(data: Mapping[str, object]) -> str:
    pairs: list[tuple[str, object]] = []
    for key, value in data.items():
        values = value if isinstance(value, list | tuple) else [value]
        pairs.extend((key, item) for item in values if item is not None)
    return urlencode(pairs)


def _ca_bundle() -> str | bool:
    """The CA bundle requests would use: REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE
    when set (its own convention), else its default."""
    return (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )


class _RecordingHttpClient(TwilioHttpClient):  # type: ignore[misc]  # no stubs
    """TwilioHttpClient that remembers, per thread, the last response's headers.

    The SDK's exceptions do not carry response headers, and its own
    ``_test_only_last_response`` is shared by all threads.
    """

    def __init__(
        self, *, timeout: float, pool_size: int = 10, api_url: str | None = None
    ) -> None:
        super().__init__(timeout=timeout)
        self._local = threading.local()
        if api_url is not None:
            # requests looks up proxy and CA-bundle variables in the process
            # environment on every request (a tenth of a send's CPU). Every
            # request goes to api_url: look them up once, for that host, as
            # requests would (no_proxy included).
            self.session.trust_env = False
            self.session.proxies = requests.utils.get_environ_proxies(api_url)
            self.session.verify = _ca_bundle()
        # Keep a connection per sending thread: the SDK's own https pool holds
        # min(32, CPUs + 4), and a thread finding it full opens (TLS
        # handshake) and discards a connection for every message.
        pool = max(10, pool_size)
        for prefix in ("https://", "http://"):
            self.session.mount(prefix, HTTPAdapter(pool_maxsize=pool))

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Any:
        self._local.headers = None
        if isinstance(data, Mapping) and (headers or {}).get("Content-Type") in (
            None,
            _FORM,
        ):
            # Encoded here as requests would (None values left out, lists as
            # repeated keys): requests' own encoding of a dict checks it
            # against a runtime protocol, a tenth of a send's CPU.
            data = _form_body(data)  # type: ignore[assignment]
            headers = {**(headers or {}), "Content-Type": _FORM}
        response = super().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )
        self._local.headers = response.headers
        return response

    def forget_last_response(self) -> None:
        self._local.headers = None

    def last_header(self, name: str) -> str | None:
        """A header of this thread's last response (case-insensitive)."""
        headers = getattr(self._local, "headers", None)
        if not headers:
            return None
        value = headers.get(name)
        return None if value is None else str(value)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


def build_client(
    account_sid: str,
    auth_token: str,
    *,
    api_url: str,
    timeout: float,
    pool_size: int = 10,
) -> tuple[Any, _RecordingHttpClient]:
    """A twilio ``Client`` whose requests go to ``api_url`` (as given: no region,
    no edge, no TWILIO_* from the process environment), and its HTTP client
    (``last_header("Date")`` …; ``close()`` it when done). ``pool_size``: how
    many connections to keep open, at least one per thread sending at once."""
    http = _RecordingHttpClient(timeout=timeout, pool_size=pool_size, api_url=api_url)
    client = Client(
        account_sid, auth_token, http_client=http, environment=_NO_ENVIRONMENT
    )
    # Belt and braces: a region or edge would rewrite api_url's host.
    client.region = None
    client.edge = None
    client.api.base_url = api_url.rstrip("/")
    return client, http


class TwilioTransport(Transport):
    """Sends through Twilio's Messages API with the official twilio-python SDK.

    One instance is shared by all worker threads. ``api_url`` can point at a
    local mock (``http://127.0.0.1:PORT``); region and edge are never set, so
    the host is used as given.
    """

    name = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_: str | None = None,
        messaging_service_sid: str | None = None,
        api_url: str = "https://api.twilio.com",
        timeout: float = 10.0,
        public_url: str | None = None,
        status_path: str = STATUS_PATH,
        pool_size: int = 10,
    ) -> None:
        if not account_sid or not auth_token:
            raise ConfigError(
                "TwilioTransport needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
            )
        if not from_ and not messaging_service_sid:
            raise ConfigError(
                "TwilioTransport needs a sender: set TWILIO_PHONE_NUMBER or "
                "TWILIO_MESSAGING_SERVICE_SID"
            )
        if not api_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"the Twilio API URL must start with http:// or https://, "
                f"not {api_url!r}"
            )
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigError(f"the Twilio timeout must be > 0 seconds, not {timeout}")
        self.account_sid = account_sid
        self.from_ = from_ or None
        self.messaging_service_sid = messaging_service_sid or None
        self.api_url = api_url.rstrip("/")
        self.timeout = float(timeout)
        self.public_url = public_url.rstrip("/") if public_url else None
        self.status_path = "/" + status_path.strip("/")

        self._client: Any
        self._client, self._http = build_client(
            account_sid,
            auth_token,
            api_url=self.api_url,
            timeout=self.timeout,
            pool_size=pool_size,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, status_path: str = STATUS_PATH
    ) -> TwilioTransport:
        """The transport ``settings`` describe (credentials, sender, API URL).

        Raises:
            ConfigError: no credentials, or no sender.
        """
        if not settings.has_twilio_credentials:
            raise ConfigError(
                "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set: put them in "
                "the environment or a .env file"
            )
        return cls(
            account_sid=settings.twilio_account_sid or "",
            auth_token=settings.twilio_auth_token or "",
            from_=settings.twilio_phone_number,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            api_url=settings.twilio_api_url,
            timeout=settings.twilio_timeout,
            public_url=settings.public_url,
            status_path=status_path,
            pool_size=settings.worker_concurrency or MAX_SEND_CONCURRENCY,
        )

    def __repr__(self) -> str:
        return (
            f"TwilioTransport(account_sid={self.account_sid!r}, "
            f"api_url={self.api_url!r})"
        )

    # -- sending -------------------------------------------------------------

    def create_params(self, message: OutboundMessage) -> dict[str, Any]:
        """The keyword arguments of the one ``messages.create`` call."""
        params: dict[str, Any] = {"to": message.to}
        if message.from_:
            params["from_"] = message.from_
        elif message.messaging_service_sid:
            params["messaging_service_sid"] = message.messaging_service_sid
        elif self.messaging_service_sid:
            params["messaging_service_sid"] = self.messaging_service_sid
        else:
            params["from_"] = self.from_
        if message.body:
            params["body"] = message.body
        if message.media:
            params["media_url"] = list(message.media)
        callback = self.status_callback_for(message)
        if callback:
            params["status_callback"] = callback
        return params

    def status_callback_for(self, message: OutboundMessage) -> str | None:
        """The message's own callback, else ``public_url/twilio/status[?outbox=N]``
        (``status_path`` instead of ``/twilio/status`` when given)."""
        if message.status_callback:
            return message.status_callback
        if not self.public_url:
            return None
        url = self.public_url + self.status_path
        if message.outbox_id is not None:
            url += f"?outbox={int(message.outbox_id)}"
        return url

    def _send(self, message: OutboundMessage) -> SendReceipt:
        params = self.create_params(message)
        self._http.forget_last_response()
        try:
            created = self._client.messages.create(**params)
        except Exception as exc:
            raise map_twilio_error(
                exc, retry_after_header=self._http.last_header("Retry-After")
            ) from exc
        return SendReceipt(
            sid=str(created.sid),
            status=str(created.status or "queued"),
            num_segments=_segments(created.num_segments),
            num_media=_int_or_none(created.num_media),
        )

    # -- reconciliation ------------------------------------------------------

    def find_sent(
        self, *, to: str, from_: str | None, since: datetime
    ) -> list[SentRecord]:
        """Messages Twilio lists to ``to`` (from ``from_``) created since ``since``.

        Twilio's ``DateSent>`` filter works on whole UTC days, so the day of
        ``since`` - 60 s is asked for and the records are filtered here on
        ``date_created``. Up to 200 records.

        Raises:
            TemporarySendError: for every failure (``RateLimited`` on HTTP
                429): listing is read-only, so nothing about it is permanent
                or ambiguous for the message being reconciled.
        """
        floor = _as_utc(since) - _FIND_SLACK
        day_start = datetime.combine(floor.date(), time(0), tzinfo=UTC)
        query: dict[str, Any] = {"to": to, "date_sent_after": day_start}
        if from_:
            query["from_"] = from_
        self._http.forget_last_response()
        try:
            found = self._client.messages.list(
                **query, page_size=_FIND_PAGE_SIZE, limit=_FIND_LIMIT
            )
        except Exception as exc:
            error = map_twilio_error(
                exc, retry_after_header=self._http.last_header("Retry-After")
            )
            if isinstance(error, AmbiguousSendError):
                error = TemporarySendError(
                    "listing Twilio messages got no answer; try again later",
                    code=error.code,
                    status=error.status,
                )
            elif not isinstance(error, TemporarySendError):
                error = TemporarySendError(
                    error.reason, code=error.code, status=error.status
                )
            raise error from exc
        records: list[SentRecord] = []
        for item in found:
            created = item.date_created
            if not isinstance(created, datetime):
                created = None
            if created is not None and _as_utc(created) < floor:
                continue
            records.append(
                SentRecord(
                    sid=str(item.sid),
                    to=str(item.to),
                    from_=None if item.from_ is None else str(item.from_),
                    body=str(item.body or ""),
                    num_media=_int_or_none(item.num_media) or 0,
                    status=str(item.status or ""),
                    date_created=created,
                )
            )
        return records

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        self._http.close()


# -- error mapping -----------------------------------------------------------


def map_twilio_error(
    exc: BaseException, *, retry_after_header: str | None = None
) -> SendError:
    """Turn whatever the twilio SDK (or requests under it) raised into a SendError.

    ``retry_after_header`` is the ``Retry-After`` header of the response that
    caused ``exc`` (the SDK's exceptions do not carry headers).
    """
    if isinstance(exc, SendError):
        return exc
    if isinstance(exc, TwilioException):
        return _from_sdk(exc, retry_after_header)
    if isinstance(exc, requests.exceptions.ConnectTimeout) or (
        isinstance(exc, requests.exceptions.ConnectionError)
        and _failed_while_connecting(exc)
    ):
        return TemporarySendError(
            f"could not connect to Twilio ({type(exc).__name__}); nothing was sent"
        )
    if isinstance(exc, requests.exceptions.SSLError):
        return TemporarySendError(
            "the TLS handshake with Twilio failed; nothing was sent"
        )
    if isinstance(
        exc,
        requests.exceptions.URLRequired
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema
        | requests.exceptions.InvalidURL,
    ):
        return TemporarySendError(
            f"the Twilio API URL is unusable ({type(exc).__name__}); nothing was sent"
        )
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return AmbiguousSendError(
            "request sent to Twilio but no answer came within the timeout; "
            "the message may exist"
        )
    if isinstance(exc, requests.exceptions.RequestException):
        return AmbiguousSendError(
            f"request sent to Twilio but no answer ({type(exc).__name__}); "
            "the message may exist"
        )
    if isinstance(exc, ValueError):  # json.JSONDecodeError on a 2xx body
        return AmbiguousSendError(
            "Twilio's answer could not be read; the message may exist"
        )
    return AmbiguousSendError(
        f"unexpected {type(exc).__name__} while talking to Twilio; "
        "the message may exist"
    )


def _from_http(status: int, code: int | None, retry_after: str | None) -> SendError:
    if status == 429 or code == 20429:
        return RateLimited(
            codes.describe(code) if code is not None else _http_reason(status),
            retry_after=parse_retry_after(retry_after),
            code=code,
            status=status,
        )
    if status >= 500:
        reason = f"Twilio answered HTTP {status}; retry later"
        if code is not None:
            reason += f" ({codes.describe(code)})"
        return TemporarySendError(reason, code=code, status=status)
    reason = codes.describe(code) if code is not None else _http_reason(status)
    return PermanentSendError(reason, code=code, status=status)


def _http_reason(status: int) -> str:
    if status == 429:
        return "Twilio answered HTTP 429 Too Many Requests; retry after a pause"
    if status in (401, 403):
        return (
            f"Twilio answered HTTP {status}; check TWILIO_ACCOUNT_SID and "
            "TWILIO_AUTH_TOKEN"
        )
    if status < 400:
        return (
            f"Twilio answered HTTP {status} instead of 201; check the Twilio "
            "API URL (TEXTWIRE_TWILIO_API_URL)"
        )
    return f"Twilio refused the request with HTTP {status} and no error code"


def _from_sdk(exc: TwilioException, retry_after: str | None) -> SendError:
    # TwilioRestException / TwilioServiceException (create, fetch …) carry the
    # HTTP status and Twilio's code, but no headers.
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return _from_http(
            status, _twilio_code(getattr(exc, "code", None), status), retry_after
        )
    # list()/paging raise TwilioException("Unable to fetch page", response):
    # mapped to TemporarySendError (or RateLimited), whatever the status.
    response = exc.args[1] if len(exc.args) > 1 else None
    status = getattr(response, "status_code", None)
    if not isinstance(status, int):
        return TemporarySendError(
            f"the Twilio client failed ({type(exc).__name__}); retry later"
        )
    code = _twilio_code(_code_from_body(getattr(response, "text", None)), status)
    if retry_after is None:
        headers = getattr(response, "headers", None)
        if isinstance(headers, Mapping) and headers.get("Retry-After") is not None:
            retry_after = str(headers.get("Retry-After"))
    if status == 429 or code == 20429:
        return _from_http(status, code, retry_after)
    reason = f"Twilio answered HTTP {status} to a list request"
    if code is not None:
        reason += f" ({codes.describe(code)})"
    return TemporarySendError(reason, code=code, status=status)


def _twilio_code(raw: object, status: int) -> int | None:
    """Twilio's error code, or None where the SDK filled in the HTTP status."""
    code = _int_or_none(raw)
    if code is None or code == status or code < 10000:
        return None
    return code


def _code_from_body(text: object) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        payload = json.loads(text)
    except ValueError:
        return None
    if isinstance(payload, dict):
        return _int_or_none(payload.get("code"))
    return None


_CONNECT_STAGE = (
    urllib3.exceptions.ConnectTimeoutError,  # includes NewConnectionError
    urllib3.exceptions.NameResolutionError,
    ConnectionRefusedError,
    socket.gaierror,
)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: causes, contexts, ``reason``, args."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked: list[object] = [
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            *current.args,
        ]
        stack.extend(item for item in linked if isinstance(item, BaseException))


def _failed_while_connecting(exc: BaseException) -> bool:
    return any(isinstance(item, _CONNECT_STAGE) for item in _causes(exc))


# -- small parsers -------------------------------------------------------------


def parse_retry_after(
    value: str | None, *, now: datetime | None = None
) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or HTTP-date.

    ``None`` when absent or unreadable; a date in the past gives ``0.0``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
        return None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:  # pragma: no cover - older Pythons
        return None
    delta = (_as_utc(when) - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, delta)


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _int_or_none(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _segments(value: object) -> int | None:
    # A Messaging Service send reports "0" until Twilio picks a sender.
    count = _int_or_none(value)
    return count if count else None

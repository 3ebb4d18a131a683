"""The simulated carrier: delivery statuses, status callbacks and inbound webhooks.

What Twilio and the phone networks do after the REST API has accepted a
message, the carrier does here, on one background thread (or step by step
through :meth:`Carrier.run_due`, for tests):

* an accepted outbound message moves ``queued → sending → sent → delivered``
  (``accepted`` first goes to ``queued`` when a Messaging Service was used),
  one step every ``step_delay`` seconds, or ends ``undelivered`` / ``failed``
  when the virtual phone it goes to says so. Every change after the first is
  POSTed to the message's ``StatusCallback``, signed with the account's auth
  token exactly as Twilio signs (no callback for the initial status, as on
  Twilio);
* a virtual phone that texts one of the account's numbers produces an inbound
  message and a signed webhook to the number's ``SmsUrl`` with Twilio's full
  parameter set; on a 5xx answer or a connection failure the ``SmsFallbackUrl``
  is called with ``ErrorCode=11200`` and ``ErrorUrl``. A TwiML answer with
  ``<Message>`` verbs is carried out as Twilio does (one ``outbound-reply``
  message per verb);
* STOP / START from a phone block and unblock sends to it (error 21610).

A webhook that fails is logged with what to check, because the person reading
the log is usually testing their own app against the emulator.

Part of the emulator proper: it imports nothing from textwire's core (Twilio's
facts come from :mod:`textwire.sandbox.rules`).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import mimetypes
import threading
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from random import Random
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
from twilio.request_validator import RequestValidator

from textwire.sandbox import rules
from textwire.sandbox.rules import API_VERSION, MAX_MEDIA, new_sid
from textwire.sandbox.state import (
    EmMedia,
    EmMessage,
    EmNumber,
    EmulatorState,
    VirtualPhone,
)

__all__ = ["Carrier", "guess_content_type"]

logger = logging.getLogger("textwire.sandbox.carrier")

USER_AGENT = "TwilioProxy/1.1"
"""The User-Agent Twilio's webhook requests carry."""

# Error codes of the fates a virtual phone can have (VirtualPhone.fate).
_FATE_CODES: Mapping[str, int] = {"undelivered": 30003, "failed": 30005}
_MMS_UNSUPPORTED = 30011
_WEBHOOK_FAILURE = 11200
_TERMINAL = frozenset(
    {"delivered", "undelivered", "failed", "canceled", "received", "read"}
)
_MAX_TWIML_BYTES = 64 * 1024  # Twilio's limit (error 11750)
_IDLE_WAIT = 0.5


@dataclass(order=True)
class _Step:
    due: datetime
    seq: int
    sid: str = field(compare=False)
    status: str = field(compare=False)
    error_code: int | None = field(compare=False, default=None)


@dataclass(frozen=True)
class _Answer:
    """What a webhook URL answered: an HTTP status, or why there was none."""

    status: int | None
    text: str = ""
    content_type: str = ""
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def calls_fallback(self) -> bool:
        """Twilio calls the fallback URL when the app fails or cannot be reached."""
        return self.status is None or self.status >= 500


class Carrier:
    """Moves messages through their delivery statuses and posts the webhooks.

    Args:
        state: the emulator's shared state.
        base_url: the emulator's own absolute URL (``http://127.0.0.1:8000``);
            pictures the virtual phones send are served under it.
        step_delay: seconds between two status changes of a message.
        http_timeout: seconds to wait for a webhook or callback to answer.
        rng: randomness for the ``I-Twilio-Idempotency-Token`` header
            (seed it for reproducible runs).
    """

    def __init__(
        self,
        state: EmulatorState,
        *,
        base_url: str,
        step_delay: float = 0.4,
        http_timeout: float = 5.0,
        rng: Random | None = None,
    ) -> None:
        if step_delay < 0:
            raise ValueError(f"step_delay must be >= 0 seconds, not {step_delay}")
        if not http_timeout > 0:
            raise ValueError(f"http_timeout must be > 0 seconds, not {http_timeout}")
        self.state = state
        self.base_url = base_url.rstrip("/")
        self.step_delay = float(step_delay)
        self.http_timeout = float(http_timeout)
        self.rng = rng if rng is not None else Random()
        self._validator = RequestValidator(state.auth_token)
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._steps: list[_Step] = []
        self._seq = itertools.count()
        self._jobs: deque[Callable[[], None]] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the background thread is running."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        """Set by :meth:`stop`; stalled API requests end when they see it."""
        return self._stop.is_set()

    def start(self) -> None:
        """Start the background thread (idempotent)."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name="textwire-sandbox-carrier", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; steps and webhooks not yet done are dropped."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.http_timeout + 2)
        with self._lock:
            dropped = len(self._jobs)
            self._jobs.clear()
        if dropped:
            logger.info("carrier stopped; %d webhook(s) not sent", dropped)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.run_due()
                while not self._stop.is_set():
                    with self._lock:
                        job = self._jobs.popleft() if self._jobs else None
                    if job is None:
                        break
                    try:
                        job()
                    except Exception:
                        logger.exception("carrier: an inbound webhook job failed")
            except Exception:  # the thread must never die
                logger.exception("carrier: a delivery step failed")
            self._wake.wait(self._idle_wait())

    def _idle_wait(self) -> float:
        with self._lock:
            if self._jobs:
                return 0.0
            if not self._steps:
                return _IDLE_WAIT
            due = self._steps[0].due
        seconds = (due - self.state.clock()).total_seconds()
        return min(max(seconds, 0.005), _IDLE_WAIT)

    # -- outbound --------------------------------------------------------------

    def on_created(self, message: EmMessage) -> None:
        """Schedule the status changes of a message the API has just accepted."""
        plan = self._plan(message)
        start = self.state.clock()
        delay = timedelta(seconds=self.step_delay)
        with self._lock:
            for index, (status, code) in enumerate(plan, 1):
                heapq.heappush(
                    self._steps,
                    _Step(
                        start + index * delay,
                        next(self._seq),
                        message.sid,
                        status,
                        code,
                    ),
                )
        self._wake.set()

    def _plan(self, message: EmMessage) -> list[tuple[str, int | None]]:
        steps: list[tuple[str, int | None]] = []
        if message.status == "accepted":
            steps.append(("queued", None))
        steps.append(("sending", None))
        final, code = self._fate(message)
        if final != "failed":
            steps.append(("sent", None))
        steps.append((final, code))
        return steps

    def _fate(self, message: EmMessage) -> tuple[str, int | None]:
        with self.state.lock:
            phone = self.state.phones.get(message.to)
        if message.media:
            route = self._mms_route(message, phone)
            if route == "refused":
                return "undelivered", _MMS_UNSUPPORTED
            if route == "converted":
                with self.state.lock:
                    message.mms_converted = True
        if phone is not None and phone.fate in _FATE_CODES:
            return phone.fate, _FATE_CODES[phone.fate]
        return "delivered", None

    @staticmethod
    def _mms_route(message: EmMessage, phone: VirtualPhone | None) -> str:
        """How media reaches ``message.to``: ``"mms"``, ``"converted"`` or
        ``"refused"``.

        Twilio: "MMS messaging can only be sent within the US and Canada ...
        MMS messages sent internationally will be converted to SMS text
        messages with a URL link to the media" (support.twilio.com article
        223179808). That is the MMS Converter, "enabled by default"; it can be
        switched off account-wide or per Messaging Service, and then the API
        answers HTTP 400 instead (article 223181248; twilio-facts §2.3). So
        with or without a Messaging Service, media to a number outside the US
        and Canada is delivered as an SMS with a link, under its MM SID. The
        emulator's account keeps the converter on, as a new Twilio account has
        it. Error 30011 ("MMS not supported by the receiving phone number in
        this region") is left for a handset that does not take MMS: a virtual
        phone with ``mms=False``.
        """
        if phone is not None and not phone.mms:
            return "refused"
        return "mms" if rules.mms_reaches(message.to) else "converted"

    def _pick_sender(self, message: EmMessage) -> str | None:
        """The sender a Messaging Service chooses from its pool: a number of
        the recipient's country when it has one (Twilio's Country Code
        Geomatch), else its first number."""
        pool = self.state.service_numbers(message.messaging_service_sid or "")
        if not pool:
            return None
        country = rules.region_of(message.to)
        same = [n for n in pool if rules.region_of(n) == country]
        return (same or pool)[0]

    def run_due(self, now: datetime | None = None) -> int:
        """Perform every status change due at ``now``, in order; return how many.

        Each change is POSTed to the message's status callback before the next
        one is made. Changes of deleted or canceled messages are skipped (and
        not counted).
        """
        when = self.state.clock() if now is None else now
        done = 0
        with self._run_lock:
            while True:
                with self._lock:
                    if not self._steps or self._steps[0].due > when:
                        break
                    step = heapq.heappop(self._steps)
                try:
                    if self._apply(step):
                        done += 1
                except Exception:
                    logger.exception("carrier: status change of %s failed", step.sid)
        return done

    def _apply(self, step: _Step) -> bool:
        title = rules.error_title(step.error_code) if step.error_code else None
        with self.state.lock:
            message = self.state.get_message(step.sid)
            if message is None or message.status in _TERMINAL:
                return False
            if message.from_ is None:
                # Leaving ``accepted``: the Messaging Service picks the sender.
                message.from_ = self._pick_sender(message)
            updated = self.state.set_status(
                step.sid, step.status, error_code=step.error_code, error_message=title
            )
        if updated is None:
            return False
        if updated.status_callback:
            self._post_status(updated, step.status, step.error_code)
        return True

    def _post_status(self, message: EmMessage, status: str, code: int | None) -> None:
        url = message.status_callback
        if not url:
            return
        params = {
            "AccountSid": message.account_sid,
            "ApiVersion": API_VERSION,
            "From": message.from_ or "",
            "MessageSid": message.sid,
            "MessageStatus": status,
            "SmsSid": message.sid,
            "SmsStatus": status,
            "To": message.to,
        }
        if message.messaging_service_sid:
            params["MessagingServiceSid"] = message.messaging_service_sid
        if code is not None:
            params["ErrorCode"] = str(code)
        if status in ("delivered", "undelivered"):
            params["RawDlrDoneDate"] = (
                self.state.clock().astimezone(UTC).strftime("%y%m%d%H%M")
            )
        answer = self._send_signed(url, "POST", params)
        if answer.ok:
            logger.debug(
                "status %s of %s posted to %s", status, message.sid, _shown(url)
            )
            return
        logger.warning(
            "status callback %s of %s (to %s): your StatusCallback %s %s",
            status,
            message.sid,
            _masked(message.to),
            _shown(url),
            _explain(answer, "StatusCallback", "POST"),
        )

    # -- inbound ---------------------------------------------------------------

    def send_from_phone(
        self,
        phone: str,
        to: str,
        body: str = "",
        files: Sequence[tuple[bytes, str]] = (),
    ) -> EmMessage:
        """A virtual phone texts one of the account's numbers.

        Args:
            phone: the phone's E.164 number (a key of ``state.phones``).
            to: one of the account's numbers, in any format.
            body: the text.
            files: pictures as ``(bytes, content type)``, at most 10.

        Returns:
            The inbound message (``received``), already stored and published.
            Its webhook is POSTed on the carrier's thread, or before this
            returns when the carrier is not started.

        Raises:
            ValueError: unknown phone, ``to`` not a number of the account, an
                empty message or too many pictures.
        """
        with self.state.lock:
            sender = self.state.phones.get(phone)
        if sender is None:
            raise ValueError(f"{_masked(phone)} is not one of the sandbox's phones")
        to_e164 = rules.read_number(to)
        if to_e164 is None:
            raise ValueError("the number to text is not valid: not a phone number")
        number = self.state.number_by_phone(to_e164)
        if number is None:
            raise ValueError(f"{_masked(to_e164)} is not one of the emulator's numbers")
        if not body and not files:
            raise ValueError("an empty message: give a text or a picture")
        if len(files) > MAX_MEDIA:
            raise ValueError(f"at most {MAX_MEDIA} pictures in one message")

        sid = new_sid("MM" if files else "SM")
        now = self.state.clock()
        message = EmMessage(
            sid=sid,
            account_sid=self.state.account_sid,
            direction="inbound",
            from_=sender.number,
            to=number.phone_number,
            body=body,
            status="received",
            media=self._keep_pictures(sid, files),
            date_created=now,
            date_updated=now,
            date_sent=now,
        )
        self._opt_keywords(sender, number, body)
        self.state.add_message(message)
        params = self._inbound_params(message, sender, number)
        logger.info(
            "inbound %s from %s to %s",
            sid,
            _masked(sender.number),
            _masked(number.phone_number),
        )
        self._run_soon(lambda: self._deliver_inbound(message, number.sid, params))
        return message

    def _keep_pictures(
        self, sid: str, files: Sequence[tuple[bytes, str]]
    ) -> list[EmMedia]:
        """Store a phone's pictures, served at Twilio's media URLs."""
        media: list[EmMedia] = []
        with self.state.lock:
            for data, content_type in files:
                media_sid = new_sid("ME")
                self.state.media_blobs[media_sid] = (bytes(data), content_type)
                url = (
                    f"{self.base_url}/{API_VERSION}/Accounts/{self.state.account_sid}"
                    f"/Messages/{sid}/Media/{media_sid}"
                )
                media.append(EmMedia(media_sid, url, content_type))
        return media

    def _run_soon(self, job: Callable[[], None]) -> None:
        """On the carrier's thread, or now when it is not started."""
        if self.running:
            with self._lock:
                self._jobs.append(job)
            self._wake.set()
        else:
            job()

    def _opt_keywords(self, sender: VirtualPhone, number: EmNumber, body: str) -> None:
        """STOP blocks sends from ``number`` to the phone; START lifts it."""
        keyword = rules.opt_keyword(body)
        pair = (sender.number, number.phone_number)
        with self.state.lock:
            if keyword == "stop":
                self.state.opted_out.add(pair)
            elif keyword == "start":
                self.state.opted_out.discard(pair)
        if keyword in ("stop", "start"):
            logger.info(
                "%s texted %s: sends from %s to it are %s",
                _masked(sender.number),
                body.strip().upper(),
                _masked(number.phone_number),
                "blocked (21610)" if keyword == "stop" else "allowed again",
            )

    def _inbound_params(
        self, message: EmMessage, sender: VirtualPhone, number: EmNumber
    ) -> dict[str, str]:
        # A carrier that delivers a national-format sender: From is the number
        # as the phone displays it, and FromCountry says where to read it.
        # Twilio derives FromCountry / ToCountry from the numbers themselves
        # (ISO 3166 codes, twilio-facts §4.1), not from what a phone claims.
        from_ = sender.display if not sender.display.startswith("+") else sender.number
        params = {
            "AccountSid": message.account_sid,
            "ApiVersion": API_VERSION,
            "Body": message.body,
            "From": from_,
            "FromCity": "",
            "FromCountry": rules.region_of(sender.number) or "",
            "FromState": "",
            "FromZip": "",
            "MessageSid": message.sid,
            "NumMedia": str(len(message.media)),
            "NumSegments": str(rules.segments(message.body).count),
            "SmsMessageSid": message.sid,
            "SmsSid": message.sid,
            "SmsStatus": "received",
            "To": number.phone_number,
            "ToCity": "",
            "ToCountry": rules.region_of(number.phone_number) or "",
            "ToState": "",
            "ToZip": "",
        }
        for index, item in enumerate(message.media):
            params[f"MediaContentType{index}"] = item.content_type
            params[f"MediaUrl{index}"] = item.url
        return params

    def _deliver_inbound(
        self, message: EmMessage, number_sid: str, params: dict[str, str]
    ) -> None:
        with self.state.lock:
            number = self.state.numbers.get(number_sid)
            if number is None:
                return
            url, method = number.sms_url, number.sms_method
            fallback, fallback_method = (
                number.sms_fallback_url,
                number.sms_fallback_method,
            )
        who = f"inbound {message.sid} from {_masked(message.from_)}"
        if not url:
            logger.warning(
                "%s: the number %s has no SmsUrl, so no webhook was sent; set it "
                "with client.incoming_phone_numbers(sid).update(sms_url=...)",
                who,
                _masked(number.phone_number),
            )
            return
        answer = self._send_signed(url, method, params)
        if answer.ok:
            logger.info("%s delivered to SmsUrl (HTTP %s)", who, answer.status)
            self._run_twiml(answer, message, number)
            return
        logger.warning(
            "%s: your SmsUrl %s %s",
            who,
            _shown(url),
            _explain(answer, "SmsUrl", method),
        )
        if not answer.calls_fallback or not fallback:
            return
        fallback_params = dict(params, ErrorCode=str(_WEBHOOK_FAILURE), ErrorUrl=url)
        answer = self._send_signed(fallback, fallback_method, fallback_params)
        if answer.ok:
            logger.info("%s delivered to SmsFallbackUrl (HTTP %s)", who, answer.status)
            self._run_twiml(answer, message, number)
            return
        logger.warning(
            "%s: your SmsFallbackUrl %s %s",
            who,
            _shown(fallback),
            _explain(answer, "SmsFallbackUrl", fallback_method),
        )

    # -- TwiML -----------------------------------------------------------------

    def _run_twiml(self, answer: _Answer, inbound: EmMessage, number: EmNumber) -> None:
        """Send the ``<Message>`` verbs of a TwiML answer, as Twilio does."""
        text = answer.text.strip()
        looks_xml = "xml" in answer.content_type.lower() or text.startswith("<")
        if not text or not looks_xml:
            return
        if len(text.encode()) > _MAX_TWIML_BYTES:
            logger.warning("TwiML answer over 64 kB ignored (Twilio error 11750)")
            return
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            logger.warning(
                "the answer to inbound %s is not valid XML (Twilio error 12100): %s",
                inbound.sid,
                exc,
            )
            return
        if root.tag != "Response":
            logger.warning(
                "the answer to inbound %s is XML but not TwiML: its root is <%s>, "
                "not <Response> (Twilio error 12100)",
                inbound.sid,
                root.tag,
            )
            return
        for verb in root:
            if verb.tag == "Message":
                self._twiml_message(verb, inbound, number)
            else:
                logger.warning(
                    "TwiML <%s> in the answer to %s is not emulated; ignored",
                    verb.tag,
                    inbound.sid,
                )

    def _twiml_message(
        self, verb: ET.Element, inbound: EmMessage, number: EmNumber
    ) -> None:
        bodies = verb.findall("Body")
        if bodies:
            body = "".join(b.text or "" for b in bodies)
        else:
            body = (verb.text or "").strip()
        urls = [(m.text or "").strip() for m in verb.findall("Media")]
        urls = [u for u in urls if u][:MAX_MEDIA]
        if not body and not urls:
            return
        to = rules.read_number(verb.get("to") or inbound.from_ or "")
        from_ = rules.read_number(verb.get("from") or number.phone_number)
        if to is None or from_ is None:
            logger.warning(
                "TwiML <Message> ignored: its %s is not a valid phone number",
                "to" if to is None else "from",
            )
            return
        if (to, from_) in self.state.opted_out:
            logger.warning(
                "TwiML <Message> to %s not sent: it texted STOP (Twilio error 21610)",
                _masked(to),
            )
            return
        now = self.state.clock()
        message = EmMessage(
            sid=new_sid("MM" if urls else "SM"),
            account_sid=self.state.account_sid,
            direction="outbound-reply",
            from_=from_,
            to=to,
            body=body,
            status="queued",
            media=[EmMedia(new_sid("ME"), u, guess_content_type(u)) for u in urls],
            status_callback=verb.get("statusCallback") or verb.get("action") or None,
            date_created=now,
            date_updated=now,
        )
        self.state.add_message(message)
        self.on_created(message)

    # -- HTTP ------------------------------------------------------------------

    def _send_signed(self, url: str, method: str, params: dict[str, str]) -> _Answer:
        """Send ``params`` to ``url`` signed as Twilio signs; never raises.

        POST: the form is signed with the URL. GET: the parameters go in the
        query string, which is part of the signed URL (no form to sign).
        """
        headers = {
            "User-Agent": USER_AGENT,
            "I-Twilio-Idempotency-Token": str(
                uuid.UUID(int=self.rng.getrandbits(128), version=4)
            ),
        }
        try:
            if method.upper() == "GET":
                full = url + ("&" if "?" in url else "?") + urlencode(params)
                headers["X-Twilio-Signature"] = self._validator.compute_signature(
                    full, {}
                )
                response = requests.get(
                    full, headers=headers, timeout=self.http_timeout
                )
            else:
                headers["X-Twilio-Signature"] = self._validator.compute_signature(
                    url, params
                )
                response = requests.post(
                    url, data=params, headers=headers, timeout=self.http_timeout
                )
        except requests.exceptions.Timeout:
            return _Answer(
                None, problem=f"did not answer within {self.http_timeout:g} s"
            )
        except requests.exceptions.ConnectionError as exc:
            return _Answer(None, problem=f"could not be reached ({_why(exc)})")
        except requests.exceptions.RequestException as exc:
            return _Answer(None, problem=f"could not be called ({_short(exc)})")
        with response:
            return _Answer(
                response.status_code,
                response.text[: _MAX_TWIML_BYTES + 1],
                response.headers.get("Content-Type", ""),
            )


def guess_content_type(url: str) -> str:
    """The media type a URL's file name suggests (``image/png``)."""
    path = url.split("?", 1)[0].split("#", 1)[0]
    guessed, _ = mimetypes.guess_type(path)
    return guessed or "application/octet-stream"


def _masked(number: str | None) -> str:
    """A number for the log, its middle hidden: ``+1415***0199``."""
    if not number:
        return "-"
    if len(number) <= 9:
        return number[0] + "***" + number[-1]
    return number[:5] + "***" + number[-4:]


def _why(exc: requests.exceptions.ConnectionError) -> str:
    """The gist of a connection failure (requests' own text is a paragraph)."""
    text = str(exc)
    for needle, gist in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host name"),
        ("nodename nor servname", "unknown host name"),
        ("Temporary failure in name resolution", "host name not resolvable"),
        ("Connection reset", "connection reset"),
        ("SSL", "TLS handshake failed"),
    ):
        if needle in text:
            return gist
    return _short(exc)


def _shown(url: str) -> str:
    """A URL for the log, without a password it may carry (``user:pass@``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:199] + "…"


def _explain(answer: _Answer, what: str, method: str) -> str:
    """What a failed webhook answer means, for the person testing their app."""
    if answer.status is None:
        return (
            f"{answer.problem}: is your app running and listening there? "
            "(Twilio reports this as error 11200)"
        )
    status = answer.status
    if status == 403:
        hint = (
            "check the signature check: validate X-Twilio-Signature against "
            "exactly this URL (scheme, host, port, path, query) and the "
            "account's auth token; behind a proxy, use the public URL"
        )
    elif status == 401:
        hint = (
            "your app asks for authentication; Twilio sends none (put "
            "user:password in the URL if you need HTTP auth)"
        )
    elif status == 404:
        hint = f"check the path of the {what}"
    elif status == 405:
        hint = f"the route does not accept {method}; check the {what}'s method"
    elif status >= 500:
        hint = "your app failed: see its log (Twilio reports error 11200)"
    elif 300 <= status < 400:
        hint = "a redirect was not followed; give the final URL"
    else:
        hint = "Twilio reports a non-2xx answer as error 11200"
    return f"answered HTTP {status}: {hint}"

"""The emulator's memory: the account, its numbers, virtual phones, messages.

Everything the REST API, the simulated carrier and the phone page share lives
in one ``EmulatorState``, guarded by one lock. Every change is published as an
event (a plain dict) to subscribers, which is how the phone page updates live.

Part of the emulator proper (with ``rules``, ``api``, ``carrier`` and
``page``): it imports nothing from textwire's core; Twilio's facts come from
:mod:`textwire.sandbox.rules`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from textwire.sandbox.rules import API_VERSION, mms_reaches, new_sid, segments

__all__ = [
    "EmMedia",
    "EmMessage",
    "EmNumber",
    "EmService",
    "EmulatorState",
    "VirtualPhone",
    "rfc2822",
]


def rfc2822(value: datetime | None) -> str | None:
    """Twilio's date format: ``Thu, 26 Nov 2026 10:00:00 +0000``."""
    if value is None:
        return None
    return format_datetime(value.astimezone(UTC).replace(microsecond=0))


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass
class EmMedia:
    sid: str
    url: str
    content_type: str


@dataclasses.dataclass
class EmMessage:
    """One message as the emulated Twilio account holds it."""

    sid: str
    account_sid: str
    direction: str  # inbound | outbound-api | outbound-reply
    # None while a Messaging Service has not chosen the sender yet (OAI:
    # ``from`` is nullable; status ``accepted``).
    from_: str | None
    to: str
    body: str
    status: str
    media: list[EmMedia] = dataclasses.field(default_factory=list)
    messaging_service_sid: str | None = None
    status_callback: str | None = None
    error_code: int | None = None
    error_message: str | None = None
    date_created: datetime = dataclasses.field(default_factory=_utcnow)
    date_updated: datetime = dataclasses.field(default_factory=_utcnow)
    date_sent: datetime | None = None
    # Media to a country without MMS, sent by Twilio's MMS Converter as an SMS
    # with a link to the media (twilio-facts §2.3).
    mms_converted: bool = False

    @property
    def num_segments(self) -> int:
        """OAI: "For messages sent via a Messaging Service, ``num_segments`` is
        initially ``0``, since a sender hasn't yet been assigned"."""
        if self.messaging_service_sid and self.status == "accepted":
            return 0
        return segments(self.body).count

    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"

    def to_json(self) -> dict[str, Any]:
        """The message resource exactly as Twilio's API returns it."""
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.date_created),
            "date_sent": rfc2822(self.date_sent),
            "date_updated": rfc2822(self.date_updated),
            "direction": self.direction,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": str(len(self.media)),
            "num_segments": str(self.num_segments),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {
                "media": self.uri().removesuffix(".json") + "/Media.json",
                "feedback": self.uri().removesuffix(".json") + "/Feedback.json",
            },
            "to": self.to,
            "uri": self.uri(),
        }

    def to_event(self) -> dict[str, Any]:
        """What the phone page needs to draw a bubble."""
        return {
            "sid": self.sid,
            "direction": self.direction,
            "from": self.from_,
            "to": self.to,
            "body": self.body,
            "media": [
                {"url": m.url, "content_type": m.content_type} for m in self.media
            ],
            "status": self.status,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "converted": self.mms_converted,
            "num_segments": self.num_segments,
            "encoding": segments(self.body).encoding,
            "date_created": self.date_created.isoformat(),
        }


@dataclasses.dataclass
class EmNumber:
    """A phone number the emulated account owns (IncomingPhoneNumber)."""

    sid: str
    account_sid: str
    phone_number: str
    friendly_name: str
    sms_url: str | None = None
    sms_method: str = "POST"
    sms_fallback_url: str | None = None
    sms_fallback_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    date_created: datetime = dataclasses.field(default_factory=_utcnow)
    date_updated: datetime = dataclasses.field(default_factory=_utcnow)
    # Capabilities: a voice-only number has sms=False; mms None means as in
    # Twilio's inventory, US and Canadian numbers only.
    sms: bool = True
    mms: bool | None = None

    def uri(self) -> str:
        return (
            f"/{API_VERSION}/Accounts/{self.account_sid}/IncomingPhoneNumbers/"
            f"{self.sid}.json"
        )

    def to_json(self) -> dict[str, Any]:
        """The IncomingPhoneNumber resource as Twilio's API returns it.

        Unset webhook URLs are ``""``, as in Twilio's own example; the voice,
        address and regulatory fields the emulator does not model are their
        neutral values (``null``, ``false``, ``"none"``).
        """
        mms = self.mms
        if mms is None:
            mms = mms_reaches(self.phone_number)
        return {
            "account_sid": self.account_sid,
            "address_requirements": "none",
            "address_sid": None,
            "api_version": API_VERSION,
            "beta": False,
            "bundle_sid": None,
            "capabilities": {"fax": False, "mms": mms, "sms": self.sms, "voice": True},
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "emergency_address_sid": None,
            "emergency_address_status": "unregistered",
            "emergency_status": "Inactive",
            "friendly_name": self.friendly_name,
            "identity_sid": None,
            "origin": "twilio",
            "phone_number": self.phone_number,
            "sid": self.sid,
            "sms_application_sid": None,
            "sms_fallback_method": self.sms_fallback_method,
            "sms_fallback_url": self.sms_fallback_url or "",
            "sms_method": self.sms_method,
            "sms_url": self.sms_url or "",
            "status": "in-use",
            "status_callback": self.status_callback or "",
            "status_callback_method": self.status_callback_method,
            "trunk_sid": None,
            "type": "local",
            "uri": self.uri(),
            "voice_application_sid": None,
            "voice_caller_id_lookup": False,
            "voice_fallback_method": "POST",
            "voice_fallback_url": None,
            "voice_method": "POST",
            "voice_receive_mode": "voice",
            "voice_url": None,
        }


@dataclasses.dataclass
class EmService:
    """A Messaging Service of the account: a pool of its numbers.

    Attributes:
        sid: ``MG…``.
        friendly_name: a name for people.
        number_sids: the ``PN…`` SIDs of the numbers in its sender pool.
    """

    sid: str
    friendly_name: str
    number_sids: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class VirtualPhone:
    """A phone in the sandbox that texts the bot's number.

    Attributes:
        number: E.164.
        label: a name for people ("Ana, San Francisco").
        display: the number as a person would type it (national formats too).
        country: the country shown on the page. The webhooks' ``FromCountry``
            is always the number's own country, as Twilio sends it.
        fate: what the simulated carrier does with messages to it:
            ``delivered`` (default), ``undelivered`` or ``failed``.
    """

    number: str
    label: str
    display: str
    country: str
    fate: str = "delivered"
    mms: bool = True


class EmulatorState:
    """Account, numbers, phones and messages of the emulator. Thread-safe."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.clock = clock
        self.lock = threading.RLock()
        self.messages: dict[str, EmMessage] = {}
        self.numbers: dict[str, EmNumber] = {}
        self.services: dict[str, EmService] = {}
        self.phones: dict[str, VirtualPhone] = {}
        # (recipient, sender) pairs where the recipient texted STOP.
        self.opted_out: set[tuple[str, str]] = set()
        self.media_blobs: dict[str, tuple[bytes, str]] = {}
        self._subscribers: list[queue.Queue[dict[str, Any]]] = []

    # -- numbers and phones ---------------------------------------------------

    def add_number(
        self, phone_number: str, friendly_name: str | None = None
    ) -> EmNumber:
        with self.lock:
            number = EmNumber(
                sid=new_sid("PN"),
                account_sid=self.account_sid,
                phone_number=phone_number,
                friendly_name=friendly_name or phone_number,
            )
            self.numbers[number.sid] = number
            return number

    def number_by_phone(self, phone_number: str) -> EmNumber | None:
        with self.lock:
            for number in self.numbers.values():
                if number.phone_number == phone_number:
                    return number
            return None

    def add_service(
        self,
        friendly_name: str,
        numbers: list[EmNumber] | None = None,
        *,
        sid: str | None = None,
    ) -> EmService:
        """A Messaging Service whose pool holds ``numbers`` (none by default)."""
        with self.lock:
            service = EmService(
                sid=sid or new_sid("MG"),
                friendly_name=friendly_name,
                number_sids=[n.sid for n in numbers or []],
            )
            self.services[service.sid] = service
            return service

    def service_numbers(self, sid: str) -> list[str] | None:
        """The phone numbers of service ``sid``'s pool; None: no such service."""
        with self.lock:
            service = self.services.get(sid)
            if service is None:
                return None
            pool = (self.numbers.get(n) for n in service.number_sids)
            return [n.phone_number for n in pool if n is not None]

    def add_phone(self, phone: VirtualPhone) -> VirtualPhone:
        with self.lock:
            self.phones[phone.number] = phone
        self.publish({"type": "phone", "phone": dataclasses.asdict(phone)})
        return phone

    # -- messages -------------------------------------------------------------

    def add_message(self, message: EmMessage) -> EmMessage:
        with self.lock:
            self.messages[message.sid] = message
        self.publish({"type": "message", "message": message.to_event()})
        return message

    def get_message(self, sid: str) -> EmMessage | None:
        with self.lock:
            return self.messages.get(sid)

    def remove_message(self, sid: str) -> EmMessage | None:
        """Delete a message and its stored media; publish ``message_deleted``."""
        with self.lock:
            message = self.messages.pop(sid, None)
            if message is None:
                return None
            for media in message.media:
                self.media_blobs.pop(media.sid, None)
        self.publish({"type": "message_deleted", "sid": sid})
        return message

    def set_status(
        self,
        sid: str,
        status: str,
        *,
        error_code: int | None = None,
        error_message: str | None = None,
    ) -> EmMessage | None:
        with self.lock:
            message = self.messages.get(sid)
            if message is None:
                return None
            message.status = status
            message.date_updated = self.clock()
            if status in ("sent", "delivered", "undelivered") and not message.date_sent:
                message.date_sent = message.date_updated
            if error_code is not None:
                message.error_code = error_code
                message.error_message = error_message
        self.publish({"type": "message", "message": message.to_event()})
        return message

    def all_messages(self) -> list[EmMessage]:
        """Every message, newest first (Twilio's list order)."""
        with self.lock:
            return sorted(
                self.messages.values(), key=lambda m: m.date_created, reverse=True
            )

    def conversation(self, phone_number: str) -> list[EmMessage]:
        """Messages to or from ``phone_number``, oldest first."""
        with self.lock:
            items = [
                m for m in self.messages.values() if phone_number in (m.to, m.from_)
            ]
        return sorted(items, key=lambda m: m.date_created)

    # -- events ---------------------------------------------------------------

    def subscribe(self) -> queue.Queue[dict[str, Any]]:
        q: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=1000)
        with self.lock:
            self._subscribers.append(q)
        return q

    def unsubscribe(self, q: queue.Queue[dict[str, Any]]) -> None:
        with self.lock:
            if q in self._subscribers:
                self._subscribers.remove(q)

    def publish(self, event: dict[str, Any]) -> None:
        with self.lock:
            subscribers = list(self._subscribers)
        for q in subscribers:
            # A stalled page drops events; it reloads its history on reconnect.
            with contextlib.suppress(queue.Full):
                q.put_nowait(event)

    def events(
        self, q: queue.Queue[dict[str, Any]], timeout: float
    ) -> Iterator[dict[str, Any]]:
        """Events from ``q`` until none arrives within ``timeout`` seconds."""
        while True:
            try:
                yield q.get(timeout=timeout)
            except queue.Empty:
                return

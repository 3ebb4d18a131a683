"""Twilio inbound-message webhooks, signed the way Twilio signs them.

Every body has its own MessageSid (textwire deduplicates by it) and a valid
``X-Twilio-Signature`` for the URL it is posted to. The signatures are made
here, in Python, before a wrk run: a Lua script cannot compute HMAC-SHA1, so
``bench/wrk_post.lua`` reads them from a file and never repeats a line.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from bench.common import ACCOUNT_SID, AUTH_TOKEN, BOT_NUMBER

# Area codes whose 555-1000 … 555-9999 numbers textwire.phone accepts; below
# 1000 is left out, so the bot's own +1 415 555 0100 is never a contact.
_AREAS = ("415", "212", "617", "312", "646", "718", "303", "206", "512", "305")
PHONES_PER_AREA = 9_000


def phone(index: int) -> str:
    """The ``index``-th distinct US number (+1 AAA 555 XXXX), for 90,000 indexes."""
    area = _AREAS[(index // PHONES_PER_AREA) % len(_AREAS)]
    return f"+1{area}555{1000 + index % PHONES_PER_AREA:04d}"


def message_sid(tag: int, index: int) -> str:
    return f"SM{tag:08x}{index:024x}"


def params(
    sid: str, from_: str, body: str = "help", to: str = BOT_NUMBER
) -> dict[str, str]:
    """The form Twilio posts for an incoming SMS (all the fields it sends)."""
    return {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "SAN FRANCISCO",
        "FromZip": "94105",
        "SmsSid": sid,
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "SAN FRANCISCO",
        "Body": body,
        "FromCountry": "US",
        "To": to,
        "ToZip": "94105",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": from_,
        "ApiVersion": "2010-04-01",
    }


class Signer:
    """Signed webhook bodies for one URL, each with a MessageSid never used before."""

    _tags = itertools.count(1)

    def __init__(self, url: str, *, phones: int = 1000, first_phone: int = 0) -> None:
        self.url = url
        self.validator = RequestValidator(AUTH_TOKEN)
        self.tag = next(self._tags)
        self.phones = phones
        self.first_phone = first_phone
        self.count = 0

    def sign(self, form: dict[str, str]) -> tuple[str, str]:
        """``(signature, urlencoded body)`` for ``form``."""
        return self.validator.compute_signature(self.url, form), urlencode(form)

    def next(
        self, *, from_: str | None = None, body: str = "help"
    ) -> tuple[str, str, str]:
        """``(signature, body, from)`` of a new message."""
        index = self.count
        self.count += 1
        sender = from_ or phone(self.first_phone + index % self.phones)
        signature, encoded = self.sign(
            params(message_sid(self.tag, index), sender, body)
        )
        return signature, encoded, sender

    def bodies(self, n: int) -> Iterator[tuple[str, str]]:
        for _ in range(n):
            signature, encoded, _sender = self.next()
            yield signature, encoded

    def write_pool(self, path: Path, n: int) -> Path:
        """Write ``n`` lines ``signature<TAB>body`` for ``bench/wrk_post.lua``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as out:
            out.writelines(f"{sig}\t{body}\n" for sig, body in self.bodies(n))
        return path

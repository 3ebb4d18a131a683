"""One catalogue of the Twilio error codes a messaging bot meets.

Every error textwire reports about a Twilio code goes through ``describe``::

    >>> describe(21610)[:40]
    '21610 Attempt to send to unsubscribed re'

Titles follow Twilio's error dictionary; ``action`` tells a person what to do.
``retryable`` marks codes where sending the same message again later can
succeed unchanged; ``opt_out`` marks the recipient-replied-STOP code, after
which nothing may be sent to that number until it texts START.

Standard library only.
"""

from __future__ import annotations

import dataclasses

__all__ = [
    "CODES",
    "OPTED_OUT",
    "TwilioCode",
    "describe",
    "means_opted_out",
    "more_info_url",
]

_DOCS = "https://www.twilio.com/docs/errors/"


@dataclasses.dataclass(frozen=True, slots=True)
class TwilioCode:
    """One Twilio error code: its title and what to do about it."""

    code: int
    title: str
    action: str
    retryable: bool = False
    opt_out: bool = False


_ALL = (
    # --- account and API ---------------------------------------------------
    TwilioCode(
        20003,
        "Permission Denied",
        "Check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN: live (not test) "
        "credentials of this account, without stray spaces.",
    ),
    TwilioCode(
        20404,
        "Not Found",
        "Check the account SID and the SID of the resource in the request.",
    ),
    TwilioCode(
        20429,
        "Too Many Requests",
        "Too many concurrent API requests; the request was not processed, "
        "retry after a pause.",
        retryable=True,
    ),
    # --- synchronous validation errors of Messages create (HTTP 400) -------
    TwilioCode(
        21211,
        "Invalid 'To' Phone Number",
        "Send the number in E.164 form (+ and country code), and not to the "
        "sending number itself.",
    ),
    TwilioCode(
        21212,
        "Invalid From Number (caller ID)",
        "Send from an E.164 Twilio number, short code or alphanumeric sender ID "
        "of this account (TWILIO_PHONE_NUMBER).",
    ),
    TwilioCode(
        21214,
        "'To' phone number cannot be reached",
        "Check the number and try again.",
    ),
    TwilioCode(
        21408,
        "Permission to send an SMS has not been enabled for the region "
        "indicated by the 'To' number",
        "Enable the destination country in the Console's Messaging Geo-Permissions.",
    ),
    TwilioCode(
        21601,
        "Phone number is not a valid SMS-capable inbound phone number",
        "Send from an SMS-capable number owned by this account.",
    ),
    TwilioCode(
        21602,
        "Message body is required",
        "Send a body, media, or both.",
    ),
    TwilioCode(
        21603,
        "A 'From' or 'MessagingServiceSid' parameter is required",
        "Set TWILIO_PHONE_NUMBER or TWILIO_MESSAGING_SERVICE_SID.",
    ),
    TwilioCode(
        21604,
        "'To' is required",
        "Pass a To number, form-encoded (not JSON).",
    ),
    TwilioCode(
        21606,
        "'From' is not a valid message-capable Twilio phone number for this "
        "destination",
        "Use a sender that can message this country; short codes reach only "
        "their own country.",
    ),
    TwilioCode(
        21608,
        "'To' not verified",
        "Trial accounts only text verified numbers: verify the number in the "
        "Console or upgrade the account.",
    ),
    TwilioCode(
        21610,
        "Attempt to send to unsubscribed recipient",
        "The recipient replied STOP: send nothing more until they text START.",
        opt_out=True,
    ),
    TwilioCode(
        21611,
        "This 'From' number has exceeded the maximum number of queued messages",
        "Send more slowly or spread the traffic over more senders.",
        retryable=True,
    ),
    TwilioCode(
        21612,
        "'To' not currently reachable via SMS",
        "Twilio has no route to this number; check that it is a mobile number "
        "in E.164 form.",
    ),
    TwilioCode(
        21614,
        "'To' number is not a valid mobile number",
        "The number is a landline or invalid; ask for a mobile number.",
    ),
    TwilioCode(
        21617,
        "Body exceeds 1600 characters",
        "Shorten the reply (an emoji counts as more than one character) or split it.",
    ),
    TwilioCode(
        21619,
        "A text message body or media urls must be specified",
        "Send a body, media, or both.",
    ),
    TwilioCode(
        21620,
        "Invalid media URL(s)",
        "Media URLs must be absolute http:// or https:// URLs.",
    ),
    TwilioCode(
        21621,
        "'From' not enabled for MMS",
        "Send media from an MMS-capable sender, or send text only.",
    ),
    TwilioCode(
        21623,
        "Number of media files exceeds allowed limit",
        "Attach at most 10 media files to one message.",
    ),
    TwilioCode(
        21635,
        "'To' number cannot be a landline",
        "Ask for a mobile number.",
    ),
    TwilioCode(
        21659,
        "'From' is not a Twilio phone number or Short Code country mismatch",
        "Send from a number of this account; a short code must be in the "
        "recipient's country.",
    ),
    # --- asynchronous delivery errors (status callbacks) ------------------
    TwilioCode(
        30001,
        "Queue overflow",
        "Too many messages queued for this sender; send more slowly or add senders.",
        retryable=True,
    ),
    TwilioCode(
        30002,
        "Account suspended",
        "Check the account's billing and compliance status with Twilio.",
    ),
    TwilioCode(
        30003,
        "Unreachable destination handset",
        "The phone is off or out of coverage; try again later.",
    ),
    TwilioCode(
        30004,
        "Message blocked",
        "The recipient or their carrier blocks this sender; do not resend.",
    ),
    TwilioCode(
        30005,
        "Unknown destination handset",
        "The number does not exist or is out of service; stop texting it.",
    ),
    TwilioCode(
        30006,
        "Landline or unreachable carrier",
        "Ask for a mobile number.",
    ),
    TwilioCode(
        30007,
        "Message filtered",
        "The carrier filtered it as spam: register the sender (A2P 10DLC or "
        "toll-free verification) and review the content.",
    ),
    TwilioCode(
        30008,
        "Unknown error",
        "Retry once later; if it persists, give Twilio support the message SID.",
    ),
    TwilioCode(
        30011,
        "MMS not supported by the receiving phone number in this region",
        "Send text only, or a link to the media.",
    ),
    TwilioCode(
        30017,
        "Carrier network congestion",
        "Resend later.",
        retryable=True,
    ),
    TwilioCode(
        30019,
        "Content size exceeds carrier limit",
        "Send smaller or fewer media files.",
    ),
    TwilioCode(
        30022,
        "US A2P 10DLC rate limit exceeded",
        "Send more slowly or raise the campaign's throughput.",
        retryable=True,
    ),
    TwilioCode(
        30023,
        "US A2P 10DLC daily cap reached",
        "The campaign's daily message cap is used up; resend tomorrow.",
    ),
    TwilioCode(
        30032,
        "Toll-Free Number Has Not Been Verified",
        "Complete toll-free verification for this number in the Console.",
    ),
    TwilioCode(
        30034,
        "US A2P 10DLC message from an unregistered number",
        "Register a brand and campaign and add this number to it.",
    ),
    TwilioCode(
        30035,
        "US A2P 10DLC number still being configured",
        "Wait until the number's campaign registration is complete.",
    ),
    # --- webhooks ----------------------------------------------------------
    TwilioCode(
        11200,
        "HTTP retrieval failure",
        "Your webhook answered with an error or took over 15 s: check the "
        "server log and answer fast.",
    ),
    TwilioCode(
        57012,
        "Signature invalid",
        "Validate against the exact public URL Twilio called, with the primary "
        "auth token.",
    ),
)

CODES: dict[int, TwilioCode] = {entry.code: entry for entry in _ALL}
"""Known codes by number."""


OPTED_OUT = 21610
"""Twilio's "Attempt to send to unsubscribed recipient": the contact replied STOP."""


def means_opted_out(code: int | None) -> bool:
    """Whether Twilio answering ``code`` means the recipient has opted out.

    The one place that rule lives: the worker (a refused send), the status
    callback (a failed message) and the storage layer all ask here.
    """
    entry = CODES.get(code) if code is not None else None
    return entry is not None and entry.opt_out


def more_info_url(code: int) -> str:
    """Twilio's documentation page for ``code``."""
    return f"{_DOCS}{int(code)}"


def describe(code: int | None) -> str:
    """``"<code> <title> — <action>"`` for a known code; a docs link otherwise.

    Never raises: ``None`` (no code given) and unknown codes get a generic text.
    """
    if code is None:
        return "no Twilio error code given"
    entry = CODES.get(code)
    if entry is None:
        return f"unknown Twilio error {code} — see {more_info_url(code)}"
    return f"{entry.code} {entry.title} — {entry.action}"

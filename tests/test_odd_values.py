"""Odd values in correctly signed requests: a clear 400 (or a cleaned value),
never a 500, on SQLite and on PostgreSQL.

Found by fuzzing signed webhooks (issue 12): integers past what a column or
Python's int conversion takes, NUL characters PostgreSQL cannot store, and
SIDs longer than their columns, each answered 500 with a traceback.
"""

from __future__ import annotations

import pytest

from textwire.errors import MalformedWebhook
from textwire.messages import Inbound, StatusCallback
from textwire.storage.sql import SqlStore
from textwire.worker import SendWorker

from .conftest import ACCOUNT_SID, PostFn, make_form

SID = "SM" + "0" * 32
HUGE = "9" * 5000  # past Python's 4,300-digit int() limit
TWILIO_MEDIA = (
    f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/"
    f"MM{'1' * 32}/Media/ME{'2' * 32}"
)


# -- the inbound webhook ---------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        ({"NumMedia": HUGE}, "NumMedia"),
        ({"NumSegments": HUGE}, "NumSegments"),
        ({"NumSegments": str(2**63)}, "NumSegments"),
        ({"NumSegments": str(2**31)}, "NumSegments"),
        ({"NumSegments": "256"}, "NumSegments"),
        ({"AccountSid": "AC" + "a" * 100}, "AccountSid"),
        ({"AccountSid": "AC1"}, "AccountSid"),
        ({"AccountSid": "AC" + "0" * 31 + "\x00"}, "AccountSid"),
        ({"MessagingServiceSid": "MG" + "a" * 100}, "MessagingServiceSid"),
        ({"MessagingServiceSid": "not a service"}, "MessagingServiceSid"),
        ({"From": "+1" + "4" * 70}, "From"),
        ({"To": "+1415555\x000100"}, "To"),
        (
            {"NumMedia": "1", "MediaUrl0": TWILIO_MEDIA + "\x00"},
            "MediaUrl0",
        ),
        ({"NumMedia": "1", "MediaUrl0": TWILIO_MEDIA + "/" + "x" * 3000}, "MediaUrl0"),
        ({"NumMedia": "1", "MediaUrl0": "javascript:alert(1)"}, "MediaUrl0"),
        (
            {
                "NumMedia": "1",
                "MediaUrl0": TWILIO_MEDIA,
                "MediaContentType0": "image/" + "x" * 300,
            },
            "MediaContentType0",
        ),
        ({"FromCity": "x" * 300}, "FromCity"),
        ({"Body": "x" * 3201}, "Body"),
    ],
)
def test_values_twilio_never_sends_get_400_and_nothing_is_stored(
    post_webhook: PostFn, store: SqlStore, change: dict[str, str], phrase: str
) -> None:
    response = post_webhook(make_form("help", **change))
    assert response.status_code == 400, response.get_data(as_text=True)
    text = response.get_data(as_text=True)
    assert phrase in text
    assert HUGE not in text and "x" * 100 not in text  # never echoed in full
    assert store.messages.all() == []


def test_nul_is_stripped_from_the_body_and_free_text(
    post_webhook: PostFn, store: SqlStore
) -> None:
    # PostgreSQL text cannot hold U+0000, no phone shows it, and a 400 would
    # lose a person's message (Twilio does not retry a 4xx): it is dropped.
    form = make_form("hel\x00lo", FromCity="SAN\x00 FRANCISCO", NumMedia="0")
    assert post_webhook(form).status_code == 200
    (row,) = store.messages.all("inbound")
    assert row["body"] == "hello"
    msg = Inbound.from_form(form)
    assert msg.body == "hello"
    assert msg.params["Body"] == "hello"
    assert msg.params["FromCity"] == "SAN FRANCISCO"
    assert all("\x00" not in value for value in msg.params.values())


def test_the_largest_values_twilio_sends_are_accepted(
    post_webhook: PostFn, store: SqlStore
) -> None:
    # Twilio truncates an inbound text at 1,600 characters; an emoji counts
    # two UTF-16 units, so 1,600 of them are 3,200 units: still accepted.
    form = make_form(
        "\N{GRINNING FACE}" * 1600,
        NumSegments="255",
        MessagingServiceSid="MG" + "ab" * 16,
        NumMedia="1",
        MediaUrl0=TWILIO_MEDIA,
        MediaContentType0="image/jpeg",
    )
    assert post_webhook(form).status_code == 200
    (row,) = store.messages.all("inbound")
    assert row["num_segments"] == 255
    assert len(row["body"]) == 1600
    assert row["media"] == [{"url": TWILIO_MEDIA, "content_type": "image/jpeg"}]


def test_unknown_fields_are_kept_whatever_their_length() -> None:
    # Twilio adds parameters without notice: a new one never costs a message
    # (the request as a whole is bounded by TEXTWIRE_MAX_REQUEST_BYTES).
    msg = Inbound.from_form(make_form("hi", ChannelMetadata="{" + "x" * 5000 + "}"))
    assert len(msg.params["ChannelMetadata"]) == 5002


# -- the status callback -----------------------------------------------------------


def _known_message(post_webhook: PostFn, worker: SendWorker, store: SqlStore) -> str:
    post_webhook(make_form("help"))
    while worker.run_once():
        pass
    (row,) = store.messages.all("outbound")
    sid: str = row["sid"]
    return sid


@pytest.mark.parametrize(
    ("query", "form", "phrase"),
    [
        ("?outbox=9223372036854775808", {}, "outbox"),
        ("?outbox=" + HUGE, {}, "outbox"),
        ("?outbox=0", {}, "outbox"),
        ("?outbox=-1", {}, "outbox"),
        ("", {"ErrorCode": str(2**63)}, "ErrorCode"),
        ("", {"ErrorCode": str(2**31)}, "ErrorCode"),
        ("", {"ErrorCode": HUGE}, "ErrorCode"),
        ("", {"ErrorCode": "-30003"}, "ErrorCode"),
        ("", {"MessageSid": "SM" + "0" * 100}, "MessageSid"),
        ("", {"MessageSid": SID[:-1] + "\x00"}, "MessageSid"),
        ("", {"MessageStatus": "sent\x00"}, "MessageStatus"),
        ("", {"MessageStatus": "s" * 100}, "MessageStatus"),
    ],
)
def test_odd_status_callbacks_get_400_and_change_nothing(
    post_webhook: PostFn,
    worker: SendWorker,
    store: SqlStore,
    query: str,
    form: dict[str, str],
    phrase: str,
) -> None:
    sid = _known_message(post_webhook, worker, store)
    callback = {"MessageSid": sid, "MessageStatus": "delivered", **form}
    response = post_webhook(callback, "/twilio/status" + query)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert phrase in response.get_data(as_text=True)
    (row,) = store.messages.all("outbound")
    assert row["status"] != "delivered" and row["error_code"] is None


def test_the_largest_status_values_twilio_sends_are_accepted(
    post_webhook: PostFn, worker: SendWorker, store: SqlStore
) -> None:
    sid = _known_message(post_webhook, worker, store)
    callback = {"MessageSid": sid, "MessageStatus": "Undelivered", "ErrorCode": "63016"}
    assert post_webhook(callback, "/twilio/status?outbox=1").status_code == 204
    (row,) = store.messages.all("outbound")
    assert row["status"] == "undelivered" and row["error_code"] == 63016


def test_status_callback_parsing() -> None:
    parsed = StatusCallback.from_form(
        {"SmsSid": SID, "SmsStatus": " Sent ", "ErrorCode": ""}, outbox="42"
    )
    assert parsed == StatusCallback(
        sid=SID, status="sent", outbox_id=42, error_code=None
    )
    assert StatusCallback.from_form(
        {"MessageSid": SID, "MessageStatus": "failed", "ErrorCode": "0"}
    ) == StatusCallback(sid=SID, status="failed", outbox_id=None, error_code=0)
    with pytest.raises(MalformedWebhook, match="MessageSid and MessageStatus"):
        StatusCallback.from_form({"MessageSid": SID})

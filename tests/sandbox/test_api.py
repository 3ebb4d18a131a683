"""The emulator's REST API, driven by the unmodified twilio client."""

from __future__ import annotations

import json
import queue
import threading
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from textwire.sandbox.api import Faults
from textwire.sandbox.state import EmMessage

from .conftest import (
    ACCOUNT_SID,
    ANA,
    AUTH_TOKEN,
    BEN,
    NUMBER,
    OTHER_NUMBER,
    SERVICE_SID,
    Emulator,
    EmulatorFactory,
    TwilioSpec,
    spec_operation,
)

PNG = "https://example.com/media/logo.png"


def api_url(emulator: Emulator, tail: str) -> str:
    return f"{emulator.url}/2010-04-01/Accounts/{ACCOUNT_SID}{tail}"


def create(client: Client, **kwargs: Any) -> Any:
    params: dict[str, Any] = {"to": ANA.number, "from_": NUMBER, "body": "hello"}
    params.update(kwargs)
    return client.messages.create(**{k: v for k, v in params.items() if v is not None})


# -- create / fetch --------------------------------------------------------------


def test_create_answers_twilio_message_resource(
    emulator: Emulator, twilio_client: Client
) -> None:
    message = create(
        twilio_client, body="Your code is 1234", status_callback="https://a.example/cb"
    )

    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert message.account_sid == ACCOUNT_SID
    assert message.status == "queued"
    assert message.direction == "outbound-api"
    assert (message.to, message.from_) == (ANA.number, NUMBER)
    assert message.num_segments == "1"
    assert message.num_media == "0"
    assert message.api_version == "2010-04-01"
    assert message.date_sent is None
    assert isinstance(message.date_created, datetime)
    assert (
        message.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message.sid}.json"
    )
    assert message.subresource_uris["media"].endswith(f"/{message.sid}/Media.json")
    stored = emulator.state.get_message(message.sid)
    assert stored is not None and stored.status_callback == "https://a.example/cb"

    fetched = twilio_client.messages(message.sid).fetch()
    assert (fetched.sid, fetched.body, fetched.status) == (
        message.sid,
        "Your code is 1234",
        "queued",
    )


def test_num_segments_as_twilio_counts_them(twilio_client: Client) -> None:
    assert create(twilio_client, body="a" * 161).num_segments == "2"
    assert create(twilio_client, body="Hi 😀").num_segments == "1"
    assert create(twilio_client, body="😀" * 36).num_segments == "2"
    # A skin-toned thumb at the boundary moves whole: 65 | 4+63 | 2.
    body = (
        "a" * 65 + "\N{THUMBS UP SIGN}\N{EMOJI MODIFIER FITZPATRICK TYPE-4}" + "a" * 65
    )
    assert create(twilio_client, body=body).num_segments == "3"


def test_create_with_media_is_an_mm_message_with_media_resources(
    emulator: Emulator, twilio_client: Client
) -> None:
    message = create(twilio_client, media_url=[PNG, "https://example.com/b.jpg"])
    assert message.sid.startswith("MM")
    assert message.num_media == "2"

    media = twilio_client.messages(message.sid).media.list()
    assert [m.content_type for m in media] == ["image/png", "image/jpeg"]
    assert all(m.sid.startswith("ME") and m.parent_sid == message.sid for m in media)
    one = twilio_client.messages(message.sid).media(media[0].sid).fetch()
    assert one.content_type == "image/png"

    # The bytes of an outbound picture: the emulator points at the original.
    raw = media[0].uri.removesuffix(".json")
    with requests.get(
        emulator.url + raw,
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        allow_redirects=False,
        timeout=5,
    ) as response:
        assert response.status_code == 302
        assert response.headers["Location"] == PNG


def test_to_without_country_code_is_read_in_the_country_of_from(
    twilio_client: Client,
) -> None:
    assert create(twilio_client, to="(415) 555-0199").to == ANA.number
    assert create(twilio_client, to="415.555.0142", from_="(415) 555-0111").to == (
        BEN.number
    )


def test_a_service_answers_accepted_without_a_sender_until_it_picks_one(
    make_emulator: EmulatorFactory,
) -> None:
    emulator = make_emulator(step_delay=10)
    twilio_client = emulator.client()
    # OAI: ``from`` is nullable and "for messages sent via a Messaging Service,
    # num_segments is initially 0, since a sender hasn't yet been assigned".
    message = create(twilio_client, from_=None, messaging_service_sid=SERVICE_SID)
    assert (message.status, message.from_, message.num_segments) == (
        "accepted",
        None,
        "0",
    )
    assert message.messaging_service_sid == SERVICE_SID
    fetched = twilio_client.messages(message.sid).fetch()
    assert (fetched.status, fetched.from_) == ("accepted", None)

    # The first step, queued: the service picks the sender.
    assert emulator.carrier.run_due(datetime.now(UTC) + timedelta(seconds=15)) == 1
    queued = twilio_client.messages(message.sid).fetch()
    assert (queued.status, queued.from_, queued.num_segments) == (
        "queued",
        NUMBER,
        "1",
    )


def test_a_service_picks_a_sender_of_the_recipients_country(
    emulator: Emulator, twilio_client: Client
) -> None:
    toronto = emulator.state.add_number("+16135550100", "Toronto")
    service = emulator.state.add_service("two countries", [emulator.number, toronto])
    sid = create(
        twilio_client, to="+16135550123", from_=None, messaging_service_sid=service.sid
    ).sid
    emulator.carrier.run_due(datetime.now(UTC))
    assert twilio_client.messages(sid).fetch().from_ == "+16135550100"


def test_a_service_with_an_explicit_from_keeps_it(twilio_client: Client) -> None:
    explicit = create(
        twilio_client, from_=OTHER_NUMBER, messaging_service_sid=SERVICE_SID
    )
    assert (explicit.status, explicit.from_) == ("accepted", OTHER_NUMBER)


def test_an_unknown_service_is_twilios_21701(
    emulator: Emulator, twilio_client: Client
) -> None:
    with pytest.raises(TwilioRestException) as caught:
        create(twilio_client, from_=None, messaging_service_sid="MG" + "f" * 32)
    assert (caught.value.status, caught.value.code) == (400, 21701)
    assert "does not exist" in caught.value.msg
    assert emulator.state.messages == {}


def test_a_service_without_numbers_is_21704(
    emulator: Emulator, twilio_client: Client
) -> None:
    empty = emulator.state.add_service("empty")
    with pytest.raises(TwilioRestException) as caught:
        create(twilio_client, from_=None, messaging_service_sid=empty.sid)
    assert caught.value.code == 21704
    assert emulator.state.messages == {}


def test_from_may_be_written_in_any_format(twilio_client: Client) -> None:
    assert create(twilio_client, from_="(415) 555-0111").from_ == OTHER_NUMBER


# -- validation errors -----------------------------------------------------------


BAD_CREATES: list[tuple[str, dict[str, Any], int]] = [
    ("no To", {"to": ""}, 21604),
    ("To too short", {"to": "12"}, 21211),
    ("To not a number", {"to": "call me"}, 21211),
    ("To of no area", {"to": "+1 999 555 0100"}, 21211),
    ("neither From nor service", {"from_": None}, 21603),
    ("From not the account's", {"from_": "+14155550177"}, 21606),
    ("From unreadable", {"from_": "+++"}, 21212),
    (
        "malformed service SID",
        {"from_": None, "messaging_service_sid": "MG123"},
        21701,
    ),
    (
        "unknown service",
        {"from_": None, "messaging_service_sid": "MG" + "e" * 32},
        21701,
    ),
    ("no body, no media", {"body": None}, 21602),
    ("empty body, no media", {"body": ""}, 21602),
    ("body over 1600", {"body": "a" * 1601}, 21617),
    ("emoji count double", {"body": "😀" * 801}, 21617),
    ("11 media", {"media_url": [PNG] * 11}, 21623),
    ("ftp media", {"media_url": ["ftp://example.com/a.png"]}, 21620),
    ("relative media", {"media_url": ["/media/a.png"]}, 21620),
    ("bad callback", {"status_callback": "not a url"}, 21609),
    ("underscore host", {"status_callback": "https://my_host.example/cb"}, 21609),
    ("To equals From", {"to": NUMBER}, 21266),
]


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [pytest.param(kwargs, code, id=name) for name, kwargs, code in BAD_CREATES],
)
def test_invalid_create_gets_twilio_error(
    emulator: Emulator, twilio_client: Client, kwargs: dict[str, Any], code: int
) -> None:
    with pytest.raises(TwilioRestException) as caught:
        create(twilio_client, **kwargs)
    assert (caught.value.status, caught.value.code) == (400, code)
    assert caught.value.msg.startswith("Unable to create record: ")
    assert emulator.state.messages == {}


def test_error_messages_read_like_twilio(twilio_client: Client) -> None:
    with pytest.raises(TwilioRestException) as caught:
        create(twilio_client, to="5551234")
    assert caught.value.msg.endswith(
        "The 'To' number 5551234 is not a valid phone number."
    )
    with pytest.raises(TwilioRestException) as caught:
        create(twilio_client, from_="+14155550177")
    assert "is not a valid, SMS-capable inbound phone number" in caught.value.msg
    with pytest.raises(TwilioRestException) as caught:
        create(twilio_client, body="")
    assert caught.value.msg.endswith("Message body is required.")


def test_a_body_of_exactly_1600_units_and_ten_media_are_accepted(
    twilio_client: Client,
) -> None:
    assert create(twilio_client, body="😀" * 800).body == "😀" * 800
    assert create(twilio_client, media_url=[PNG] * 10).num_media == "10"
    assert create(twilio_client, body=None, media_url=[PNG]).body == ""


def test_opted_out_recipient_gets_21610(
    emulator: Emulator, twilio_client: Client
) -> None:
    emulator.state.opted_out.add((ANA.number, NUMBER))
    with pytest.raises(TwilioRestException) as caught:
        create(twilio_client)
    assert caught.value.code == 21610
    # Opt-out is per sender: the other number may still text Ana ...
    assert create(twilio_client, from_=OTHER_NUMBER).status == "queued"
    # ... but not through the service, whose pool holds the blocked number.
    with pytest.raises(TwilioRestException) as caught:
        create(twilio_client, from_=None, messaging_service_sid=SERVICE_SID)
    assert caught.value.code == 21610


def test_sending_to_another_own_number_is_allowed(twilio_client: Client) -> None:
    assert create(twilio_client, to=OTHER_NUMBER).to == OTHER_NUMBER


def test_json_body_is_refused_with_21604(emulator: Emulator) -> None:
    with requests.post(
        api_url(emulator, "/Messages.json"),
        json={"To": ANA.number, "From": NUMBER, "Body": "hi"},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    ) as response:
        assert response.status_code == 400
        body = response.json()
    assert body["code"] == 21604
    assert "form-encoded" in body["message"]
    assert emulator.state.messages == {}


# -- authentication --------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "password"),
    [(ACCOUNT_SID, "wrong-token"), ("AC" + "0" * 32, AUTH_TOKEN), (ACCOUNT_SID, "")],
)
def test_bad_credentials_get_20003(
    emulator: Emulator, username: str, password: str
) -> None:
    client = emulator.client(username=username, password=password)
    with pytest.raises(TwilioRestException) as caught:
        create(client)
    assert (caught.value.status, caught.value.code) == (401, 20003)
    assert emulator.state.messages == {}


def test_401_body_and_header_are_twilio_s(emulator: Emulator) -> None:
    with requests.get(api_url(emulator, "/Messages.json"), timeout=5) as response:
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic ")
        assert response.json() == {
            "code": 20003,
            "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003",
            "status": 401,
        }


def test_another_account_in_the_path_is_not_found(emulator: Emulator) -> None:
    url = f"{emulator.url}/2010-04-01/Accounts/AC{'1' * 32}/Messages.json"
    with requests.get(url, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5) as response:
        assert response.status_code == 404
        assert response.json()["code"] == 20404


def test_unknown_resources_are_twilio_404s(emulator: Emulator) -> None:
    for tail in ("/Calls.json", "/Messages/SM" + "0" * 32 + ".json", "/Messages"):
        with requests.get(
            api_url(emulator, tail), auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5
        ) as response:
            assert response.status_code == 404, tail
            assert response.json()["code"] == 20404


def test_fetch_of_unknown_message_raises_20404(twilio_client: Client) -> None:
    with pytest.raises(TwilioRestException) as caught:
        twilio_client.messages("SM" + "0" * 32).fetch()
    assert (caught.value.status, caught.value.code) == (404, 20404)


# -- list, filters, paging -------------------------------------------------------


def test_list_pages_through_next_page_uri_newest_first(
    emulator: Emulator, twilio_client: Client
) -> None:
    sids = [create(twilio_client, body=f"message {i}").sid for i in range(7)]
    newest_first = sids[::-1]

    listed = twilio_client.messages.list(limit=7, page_size=3)
    assert [m.sid for m in listed] == newest_first
    gets = [e for e in emulator.exchanges if e[0] == "GET"]
    assert len(gets) == 3  # 3 + 3 + 1, each page fetched through next_page_uri
    pages = [json.loads(text) for _, _, _, text in gets]
    assert [len(p["messages"]) for p in pages] == [3, 3, 1]
    assert [p["page"] for p in pages] == [0, 1, 2]
    assert [(p["start"], p["end"]) for p in pages] == [(0, 2), (3, 5), (6, 6)]
    assert pages[0]["previous_page_uri"] is None
    assert pages[2]["next_page_uri"] is None
    assert pages[1]["next_page_uri"] in gets[2][1]
    assert all(p["page_size"] == 3 for p in pages)
    assert all(p["first_page_uri"].endswith("PageSize=3&Page=0") for p in pages)
    assert pages[1]["previous_page_uri"] is not None

    assert [m.sid for m in twilio_client.messages.stream(page_size=2)] == newest_first
    assert [m.sid for m in twilio_client.messages.list(limit=4)] == newest_first[:4]


def test_page_objects_walk_forward_and_back(twilio_client: Client) -> None:
    sids = [create(twilio_client, body=f"m{i}").sid for i in range(5)][::-1]
    first = twilio_client.messages.page(page_size=2)
    second = first.next_page()
    assert [m.sid for m in second] == sids[2:4]
    back = second.previous_page()
    assert [m.sid for m in back] == sids[:2]
    third = second.next_page()
    assert [m.sid for m in third] == sids[4:]
    assert third.next_page() is None


def test_paging_is_stable_while_new_messages_arrive(twilio_client: Client) -> None:
    old = [create(twilio_client, body=f"old {i}").sid for i in range(4)][::-1]
    first = twilio_client.messages.page(page_size=2)
    create(twilio_client, body="newer than the first page")
    second = first.next_page()
    assert [m.sid for m in first] + [m.sid for m in second] == old


def test_list_filters_by_to_and_from_in_any_format(twilio_client: Client) -> None:
    a = create(twilio_client, to=ANA.number).sid
    b = create(twilio_client, to=BEN.number).sid
    c = create(twilio_client, to=ANA.number, from_=OTHER_NUMBER).sid

    assert {m.sid for m in twilio_client.messages.list(to=ANA.number)} == {a, c}
    assert [m.sid for m in twilio_client.messages.list(to="(415) 555-0142")] == [b]
    assert [m.sid for m in twilio_client.messages.list(from_=OTHER_NUMBER)] == [c]
    assert [
        m.sid for m in twilio_client.messages.list(to=ANA.number, from_=NUMBER)
    ] == [a]
    assert twilio_client.messages.list(to="+14155550177") == []


def test_filters_are_kept_in_paging_uris(
    emulator: Emulator, twilio_client: Client
) -> None:
    for _ in range(3):
        create(twilio_client)
    create(twilio_client, to=BEN.number)
    listed = twilio_client.messages.list(to=ANA.number, page_size=2)
    assert len(listed) == 3
    pages = [json.loads(e[3]) for e in emulator.exchanges if e[0] == "GET"]
    assert "To=%2B14155550199" in pages[0]["next_page_uri"]
    assert "To=%2B14155550199" in pages[0]["uri"]


def _dated(emulator: Emulator, sid: str, sent: datetime | None) -> None:
    message = emulator.state.get_message(sid)
    assert message is not None
    with emulator.state.lock:
        message.date_sent = sent
        message.date_created = sent or message.date_created


def test_date_sent_filters(emulator: Emulator, twilio_client: Client) -> None:
    jan10 = create(twilio_client, body="jan 10").sid
    jan11 = create(twilio_client, body="jan 11").sid
    queued = create(twilio_client, body="not sent yet").sid
    _dated(emulator, jan10, datetime(2026, 1, 10, 10, 0, tzinfo=UTC))
    _dated(emulator, jan11, datetime(2026, 1, 11, 12, 0, tzinfo=UTC))

    def sids(**kwargs: Any) -> set[str]:
        return {m.sid for m in twilio_client.messages.list(**kwargs)}

    assert sids(date_sent=date(2026, 1, 10)) == {jan10}
    # twilio-python sends dates as midnight (…T00:00:00Z): still a whole day.
    assert sids(date_sent_before=date(2026, 1, 10)) == {jan10}
    assert sids(date_sent_after=date(2026, 1, 11)) == {jan11, queued}
    assert sids(
        date_sent_after=date(2026, 1, 10), date_sent_before=date(2026, 1, 11)
    ) == {
        jan10,
        jan11,
    }
    # A time of day is an instant.
    assert sids(date_sent_after=datetime(2026, 1, 11, 12, 30, tzinfo=UTC)) == {queued}
    assert sids(date_sent_before=datetime(2026, 1, 11, 11, 0, tzinfo=UTC)) == {jan10}
    # A message not sent yet is matched on its creation date.
    today = datetime.now(UTC).date()
    assert queued in sids(date_sent=today)


def test_date_filter_formats_on_the_wire(
    emulator: Emulator, twilio_client: Client
) -> None:
    sid = create(twilio_client).sid
    _dated(emulator, sid, datetime(2026, 3, 5, 8, 0, tzinfo=UTC))
    auth = (ACCOUNT_SID, AUTH_TOKEN)
    url = api_url(emulator, "/Messages.json")
    for value in (
        "2026-03-05",
        "2026-03-05T07:59:00Z",
        "Thu, 05 Mar 2026 07:00:00 +0000",
    ):
        with requests.get(url, params={"DateSent>": value}, auth=auth, timeout=5) as r:
            assert r.status_code == 200, value
            assert [m["sid"] for m in r.json()["messages"]] == [sid], value
    with requests.get(url, params={"DateSent": "yesterday"}, auth=auth, timeout=5) as r:
        assert r.status_code == 400
        assert r.json()["status"] == 400


@pytest.mark.parametrize("page_size", ["0", "1001", "ten"])
def test_bad_page_size_is_a_400(emulator: Emulator, page_size: str) -> None:
    with requests.get(
        api_url(emulator, "/Messages.json"),
        params={"PageSize": page_size},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    ) as response:
        assert response.status_code == 400


def test_list_errors_reach_the_client(emulator: Emulator) -> None:
    client = emulator.client(password="wrong")
    with pytest.raises(TwilioException):
        client.messages.list()


# -- update / delete -------------------------------------------------------------


def test_redact_body(emulator: Emulator, twilio_client: Client) -> None:
    sid = create(twilio_client, body="my secret code 1234").sid
    emulator.carrier.run_due(datetime.now(UTC) + timedelta(hours=1))
    updated = twilio_client.messages(sid).update(body="")
    assert updated.body == ""
    assert updated.status == "delivered"
    assert twilio_client.messages(sid).fetch().body == ""


def test_cancel_a_queued_message(emulator: Emulator, twilio_client: Client) -> None:
    sid = create(twilio_client).sid
    assert twilio_client.messages(sid).update(status="canceled").status == "canceled"
    assert emulator.carrier.run_due(datetime.now(UTC) + timedelta(hours=1)) == 0
    assert twilio_client.messages(sid).fetch().status == "canceled"


def test_cancel_after_sending_is_refused(
    emulator: Emulator, twilio_client: Client
) -> None:
    sid = create(twilio_client).sid
    emulator.carrier.run_due(datetime.now(UTC) + timedelta(hours=1))
    with pytest.raises(TwilioRestException) as caught:
        twilio_client.messages(sid).update(status="canceled")
    assert (caught.value.status, caught.value.code) == (400, 30409)


def test_update_body_to_text_is_refused(twilio_client: Client) -> None:
    sid = create(twilio_client).sid
    with pytest.raises(TwilioRestException) as caught:
        twilio_client.messages(sid).update(body="changed")
    assert caught.value.status == 400
    assert twilio_client.messages(sid).fetch().body == "hello"


def test_delete(emulator: Emulator, twilio_client: Client) -> None:
    sid = create(twilio_client).sid
    assert twilio_client.messages(sid).delete() is True
    with pytest.raises(TwilioRestException) as caught:
        twilio_client.messages(sid).fetch()
    assert caught.value.code == 20404
    assert emulator.carrier.run_due(datetime.now(UTC) + timedelta(hours=1)) == 0
    with pytest.raises(TwilioRestException) as caught:
        twilio_client.messages(sid).delete()
    assert caught.value.status == 404


# -- IncomingPhoneNumbers --------------------------------------------------------


def test_incoming_numbers_list_and_filter(
    emulator: Emulator, twilio_client: Client
) -> None:
    numbers = twilio_client.incoming_phone_numbers.list()
    assert [n.phone_number for n in numbers] == [NUMBER, OTHER_NUMBER]

    for spelled in (NUMBER, "(415) 555-0100", "+1 415-555-0100", "14155550100"):
        found = twilio_client.incoming_phone_numbers.list(phone_number=spelled)
        assert [n.sid for n in found] == [emulator.number.sid], spelled
    partial = twilio_client.incoming_phone_numbers.list(phone_number="55501**")
    assert len(partial) == 2
    assert twilio_client.incoming_phone_numbers.list(phone_number="0111") != []
    assert twilio_client.incoming_phone_numbers.list(phone_number="+14155550177") == []
    named = twilio_client.incoming_phone_numbers.list(friendly_name="second number")
    assert [n.phone_number for n in named] == [OTHER_NUMBER]


def test_point_a_number_at_a_tunnel(emulator: Emulator, twilio_client: Client) -> None:
    number = twilio_client.incoming_phone_numbers.list(phone_number=NUMBER)[0]
    assert number.sms_url == ""
    assert number.capabilities == {
        "fax": False,
        "mms": True,
        "sms": True,
        "voice": True,
    }

    updated = twilio_client.incoming_phone_numbers(number.sid).update(
        sms_url="https://abc123.ngrok.app/twilio/sms",
        sms_method="get",
        sms_fallback_url="https://abc123.ngrok.app/fallback",
        sms_fallback_method="GET",
        status_callback="https://abc123.ngrok.app/twilio/status",
        status_callback_method="POST",
        friendly_name="tunnel",
    )
    assert updated.sms_url == "https://abc123.ngrok.app/twilio/sms"
    assert updated.sms_method == "GET"
    assert updated.sms_fallback_url == "https://abc123.ngrok.app/fallback"
    assert updated.sms_fallback_method == "GET"
    assert updated.status_callback == "https://abc123.ngrok.app/twilio/status"
    assert updated.friendly_name == "tunnel"
    assert emulator.number.sms_url == "https://abc123.ngrok.app/twilio/sms"
    assert emulator.number.sms_method == "GET"

    fetched = twilio_client.incoming_phone_numbers(number.sid).fetch()
    assert fetched.sms_url == "https://abc123.ngrok.app/twilio/sms"

    # Clearing, as Twilio's Dev Phone does on shutdown.
    cleared = twilio_client.incoming_phone_numbers(number.sid).update(sms_url="")
    assert cleared.sms_url == ""
    assert emulator.number.sms_url is None


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"sms_url": "ftp://example.com/sms"}, 21502),
        ({"sms_url": "localhost:5000/sms"}, 21502),
        ({"sms_fallback_url": "not a url"}, 21502),
        ({"sms_method": "PUT"}, 20001),
        ({"friendly_name": "x" * 65}, 20001),
    ],
)
def test_invalid_number_update(
    emulator: Emulator, twilio_client: Client, kwargs: dict[str, str], code: int
) -> None:
    with pytest.raises(TwilioRestException) as caught:
        twilio_client.incoming_phone_numbers(emulator.number.sid).update(**kwargs)
    assert (caught.value.status, caught.value.code) == (400, code)
    assert emulator.number.sms_url is None


def test_unknown_number_is_not_found(twilio_client: Client) -> None:
    with pytest.raises(TwilioRestException) as caught:
        twilio_client.incoming_phone_numbers("PN" + "0" * 32).fetch()
    assert caught.value.code == 20404


# -- faults ----------------------------------------------------------------------


def test_faults_draw_is_seeded() -> None:
    one = Faults(error_500_rate=0.3, error_429_rate=0.3, stall_rate=0.2, seed=7)
    two = Faults(error_500_rate=0.3, error_429_rate=0.3, stall_rate=0.2, seed=7)
    draws = [one.draw() for _ in range(200)]
    assert draws == [two.draw() for _ in range(200)]
    assert {"500", "429", "stall", None} == set(draws)
    assert Faults().draw() is None
    with pytest.raises(ValueError):
        Faults(error_500_rate=0.6, error_429_rate=0.6)
    with pytest.raises(ValueError):
        Faults(stall_rate=1.5)


def test_500_creates_nothing(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator(faults=Faults(error_500_rate=1.0))
    with pytest.raises(TwilioRestException) as caught:
        create(emulator.client())
    assert (caught.value.status, caught.value.code) == (500, 20500)
    assert emulator.state.messages == {}


def test_429_creates_nothing_and_says_when_to_retry(
    make_emulator: EmulatorFactory,
) -> None:
    emulator = make_emulator(faults=Faults(error_429_rate=1.0, retry_after=7))
    with pytest.raises(TwilioRestException) as caught:
        create(emulator.client())
    assert (caught.value.status, caught.value.code) == (429, 20429)
    with requests.post(
        api_url(emulator, "/Messages.json"),
        data={"To": ANA.number, "From": NUMBER, "Body": "hi"},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    ) as response:
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"
    assert emulator.state.messages == {}
    # Only creates fail: reads still work.
    assert emulator.client().messages.list() == []


def test_stall_creates_the_message_but_the_client_times_out(
    make_emulator: EmulatorFactory,
) -> None:
    emulator = make_emulator(faults=Faults(stall_rate=1.0, stall_seconds=60))
    events = emulator.state.subscribe()
    client = emulator.client(timeout=0.5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        create(client, body="did it go out?")
    created = events.get(timeout=10)["message"]  # accepted, whatever the client saw
    emulator.state.unsubscribe(events)
    message = emulator.state.get_message(created["sid"])
    assert message is not None and message.body == "did it go out?"
    # The client can find it, as a reconciling sender does.
    assert [m.sid for m in emulator.client().messages.list(to=ANA.number)] == [
        message.sid
    ]


def test_release_ends_a_stall(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator(faults=Faults(stall_rate=1.0, stall_seconds=60))
    events = emulator.state.subscribe()
    result: dict[str, Any] = {}

    def send() -> None:
        try:
            result["message"] = create(emulator.client(timeout=30))
        except Exception as exc:  # pragma: no cover - reported below
            result["error"] = exc

    thread = threading.Thread(target=send)
    started = time.monotonic()
    thread.start()
    event = events.get(timeout=10)  # the message exists: the answer is stalled
    assert event["type"] == "message"
    assert thread.is_alive()
    emulator.faults.release()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert "error" not in result
    assert result["message"].sid == event["message"]["sid"]
    assert time.monotonic() - started < 30
    emulator.state.unsubscribe(events)


def test_latency_is_added_to_every_request(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator(faults=Faults(latency=0.25))
    client = emulator.client()
    started = time.monotonic()
    create(client)
    client.messages.list()
    assert time.monotonic() - started >= 0.5


# -- conformance with Twilio's OpenAPI definition ----------------------------------


def test_every_answer_conforms_to_twilio_openapi(
    emulator: Emulator, twilio_client: Client, twilio_spec: TwilioSpec
) -> None:
    """Run through every endpoint with the twilio client; validate each body."""
    client = twilio_client
    sms = create(client, status_callback="https://a.example/cb")
    mms = create(client, to=BEN.number, media_url=[PNG])
    via_service = create(client, from_=None, messaging_service_sid=SERVICE_SID)
    failed = create(client, to="+14155550123")  # Fay: undelivered, error 30003
    emulator.carrier.run_due(datetime.now(UTC) + timedelta(hours=1))
    inbound = emulator.carrier.send_from_phone(
        ANA.number, NUMBER, "photo", [(b"\x89PNG\r\n", "image/png")]
    )

    client.messages.list(page_size=2, limit=10)
    client.messages.list(to=ANA.number, date_sent_after=date(2020, 1, 1))
    client.messages(sms.sid).fetch()
    client.messages(failed.sid).fetch()
    client.messages(via_service.sid).update(body="")
    for sid in (mms.sid, inbound.sid):
        media = client.messages(sid).media.list()
        client.messages(sid).media(media[0].sid).fetch()
    numbers = client.incoming_phone_numbers.list(phone_number=NUMBER)
    client.incoming_phone_numbers(numbers[0].sid).fetch()
    client.incoming_phone_numbers(numbers[0].sid).update(sms_url="https://x.example/s")
    with pytest.raises(TwilioRestException):
        create(client, to="nope")
    client.messages(sms.sid).delete()

    checked: set[str] = set()
    for method, url, status, text in emulator.exchanges:
        if status == 204:
            assert text == ""
            continue
        body = json.loads(text)
        if status >= 400:
            assert set(body) == {"code", "message", "more_info", "status"}
            assert (type(body["code"]), body["status"]) == (int, status)
            assert (
                body["more_info"]
                == f"https://www.twilio.com/docs/errors/{body['code']}"
            )
            continue
        operation = spec_operation(method, url)
        schema = twilio_spec.response(operation, method.lower(), str(status))
        twilio_spec.validate(body, schema)
        # Same fields as Twilio's resources, no more, no fewer.
        assert set(body) == twilio_spec.properties(schema), operation
        for key, value in body.items():
            if isinstance(value, list):
                item_schema = schema["properties"][key]["items"]
                for item in value:
                    assert set(item) == twilio_spec.properties(item_schema), key
        checked.add(f"{method} {operation}")
    assert checked == {
        "POST /Messages.json",
        "GET /Messages.json",
        "GET /Messages/{Sid}.json",
        "POST /Messages/{Sid}.json",
        "GET /Messages/{MessageSid}/Media.json",
        "GET /Messages/{MessageSid}/Media/{Sid}.json",
        "GET /IncomingPhoneNumbers.json",
        "GET /IncomingPhoneNumbers/{Sid}.json",
        "POST /IncomingPhoneNumbers/{Sid}.json",
    }


def test_dates_are_rfc_2822_and_counters_strings(
    emulator: Emulator, twilio_client: Client
) -> None:
    from email.utils import parsedate_to_datetime

    sid = create(twilio_client).sid
    emulator.carrier.run_due(datetime.now(UTC) + timedelta(hours=1))
    twilio_client.messages(sid).fetch()
    body = json.loads(emulator.exchanges[-1][3])
    for key in ("date_created", "date_updated", "date_sent"):
        assert body[key].endswith(" +0000"), key
        assert parsedate_to_datetime(body[key]).tzinfo is not None
    assert isinstance(body["num_segments"], str) and isinstance(body["num_media"], str)


def test_state_events_follow_api_changes(
    emulator: Emulator, twilio_client: Client
) -> None:
    events: queue.Queue[dict[str, Any]] = emulator.state.subscribe()
    try:
        sid = create(twilio_client).sid
        twilio_client.messages(sid).update(body="")
        twilio_client.messages(sid).delete()
        twilio_client.incoming_phone_numbers(emulator.number.sid).update(
            friendly_name="renamed"
        )
        kinds = [events.get(timeout=5)["type"] for _ in range(4)]
    finally:
        emulator.state.unsubscribe(events)
    assert kinds == ["message", "message", "message_deleted", "number"]


def test_emmessage_to_json_matches_the_resource_schema(twilio_spec: TwilioSpec) -> None:
    message = EmMessage(
        sid="SM" + "a" * 32,
        account_sid=ACCOUNT_SID,
        direction="inbound",
        from_=ANA.number,
        to=NUMBER,
        body="",
        status="received",
    )
    schema = twilio_spec.component("api.v2010.account.message")
    twilio_spec.validate(message.to_json(), schema)
    assert set(message.to_json()) == set(schema["properties"])

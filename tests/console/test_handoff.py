"""Handoff to a person: ctx.handoff(), the middleware that silences the bot,
STOP/START during a handoff, the timeout, and the help desk's use of it —
through BotTester (as bot authors test) and through the worker and the
database (as production runs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from textwire import Bot, Context, Inbound
from textwire import filters as F
from textwire.config import Settings
from textwire.examples.helpdesk import HANDED_OFF, MENU, create_bot
from textwire.storage.sql import SqlStore
from textwire.testing import BotTester, FakeMediaSource, make_inbound

from ..conftest import handle_inbox

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ANA = "+14155550199"


def test_agent_hands_off_and_the_bot_stays_silent_until_handed_back() -> None:
    tester = BotTester(create_bot())
    assert tester.texts("agent") == [HANDED_OFF]
    assert ANA in tester.handed_off
    assert tester.handed_off[ANA].note == "asked for a person"
    # With a person: nothing from the bot, whatever is said.
    assert tester.texts("help") == []
    assert tester.texts("hours") == []
    assert tester.last is not None and tester.last.route is None
    tester.hand_back(ANA)
    assert "Monday" in tester.texts("hours")[0]


def test_stop_and_start_still_apply_during_a_handoff() -> None:
    tester = BotTester(create_bot())
    tester.texts("agent")
    assert tester.texts("STOP") == []
    assert ANA in tester.opted_out
    assert tester.texts("START") == []
    assert ANA not in tester.opted_out
    # Still with a person afterwards.
    assert tester.texts("help") == []


def test_an_urgent_ticket_hands_off_and_keeps_its_photo() -> None:
    photo = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1"
    media = FakeMediaSource({photo: (b"\x89PNG fake", "image/png")})
    tester = BotTester(create_bot(), media=media)
    tester.texts("ticket")
    (answer,) = tester.send("URGENT: the till is on fire", media=[photo])
    assert "with your photo" in answer.body
    assert "a person will answer" in answer.body
    assert media.fetched == [photo]
    assert tester.handed_off[ANA].note.startswith("urgent ticket #")
    assert tester.texts("hello?") == []


def test_a_ticket_whose_photo_is_gone_still_opens() -> None:
    tester = BotTester(create_bot())  # the tester's media has no such file
    tester.texts("ticket")
    (answer,) = tester.send("printer jammed", media=["https://api.twilio.com/x/ME9"])
    assert answer.body.startswith("Thanks, ticket #")
    assert "photo" not in answer.body
    assert ANA not in tester.handed_off
    assert tester.texts("hi") == [MENU]


def test_the_handoff_times_out_and_the_bot_answers_again() -> None:
    settings = Settings(handoff_timeout=3600)
    tester = BotTester(create_bot(), settings=settings)
    tester.send("agent", now=T0)
    assert tester.send("hours", now=T0 + timedelta(minutes=59)) == []
    (reply,) = tester.send("hours", now=T0 + timedelta(minutes=61))
    assert "Monday" in reply.body
    assert tester.last is not None and tester.last.handoff is not None
    assert tester.last.handoff.active is False and tester.last.handoff.by == "timeout"
    assert ANA not in tester.handed_off


def test_no_timeout_when_it_is_zero() -> None:
    tester = BotTester(create_bot(), settings=Settings(handoff_timeout=0))
    tester.send("agent", now=T0)
    assert tester.send("hours", now=T0 + timedelta(days=400)) == []


def _handoff_row(store: SqlStore, phone: str) -> dict[str, object]:
    (row,) = [
        c for c in store.console.conversations(T0, phones=[phone]) if c.contact.phone
    ]
    return {
        "handoff": row.contact.handoff,
        "waiting": row.waiting,
        "unread": row.unread,
    }


def test_handoff_through_the_worker_is_stored_and_silences_the_bot(
    store: SqlStore, settings: Settings
) -> None:
    # Given the help desk handling messages from the inbox
    bot = create_bot()

    def text(body: str) -> None:
        store.inbox.record(make_inbound(body, from_=ANA), T0)
        handle_inbox(store, bot, settings, now=T0)

    # When Ana asks for a person
    text("agent")
    state = _handoff_row(store, ANA)
    assert state["handoff"] is not None
    assert state["waiting"] is False  # the bot answered last
    # Then her next messages get no reply and wait for a person
    text("help")
    text("anyone there?")
    bodies = [m["body"] for m in store.messages.all("outbound")]
    assert bodies == [HANDED_OFF]
    state = _handoff_row(store, ANA)
    assert state["waiting"] is True and state["unread"] == 3
    # And STOP still opts her out while she is with a person
    text("STOP")
    assert store.contacts.is_opted_out(ANA)
    # Back to the bot: it answers again
    from textwire.operator import hand_back

    text("START")
    hand_back(store, contact=ANA, operator="Sam", now=T0)
    text("hours")
    assert "Monday" in store.messages.all("outbound")[-1]["body"]
    assert _handoff_row(store, ANA)["handoff"] is None


def test_a_handler_may_hand_off_and_reply_in_an_async_handler(
    store: SqlStore, settings: Settings
) -> None:
    bot = Bot(name="async-desk")

    @bot.message(F.keyword("human"))
    async def human(msg: Inbound, ctx: Context) -> str:
        ctx.handoff(note="async")
        return "hold on"

    store.inbox.record(make_inbound("human", from_=ANA), T0)
    handle_inbox(store, bot, settings, now=T0)
    contact = store.console.contact_by_phone(ANA, T0)
    assert contact.handoff is not None and contact.handoff.note == "async"
    assert contact.handoff.by == "bot"


def test_in_twiml_mode_a_handed_off_contact_gets_an_empty_answer(
    store: SqlStore, settings: Settings
) -> None:
    from textwire.web import create_app

    from ..conftest import PUBLIC_URL, make_form, sign

    client = create_app(
        settings.replace(reply_mode="twiml"), bot=create_bot(), store=store
    ).test_client()

    def post(body: str) -> str:
        form = make_form(body)
        signature = sign(PUBLIC_URL + "/twilio/sms", form)
        answer = client.post(
            "/twilio/sms", data=form, headers={"X-Twilio-Signature": signature}
        )
        assert answer.status_code == 200
        return answer.text

    assert HANDED_OFF in post("agent")
    silent = post("help")
    assert "<Message" not in silent and "Response" in silent
    assert store.console.contact_by_phone(ANA, T0).handoff is not None

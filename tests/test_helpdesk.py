"""The help-desk example bot, through textwire.testing (as bot authors test)."""

from __future__ import annotations

from textwire.examples.helpdesk import MENU, create_bot
from textwire.testing import BotTester


def test_help_is_one_reply_with_text_and_two_images() -> None:
    tester = BotTester(create_bot(), public_url="https://desk.example.org")
    for text in ["help", "HELP", "  Help  ", "info"]:
        (reply,) = tester.send(text)
        assert "help desk" in reply.body
        assert reply.media == (
            "https://desk.example.org/media/logo.png",
            "https://desk.example.org/media/helpdesk.png",
        )
        assert reply.segments.encoding == "GSM-7"


def test_other_text_gets_the_menu() -> None:
    tester = BotTester(create_bot())
    assert tester.texts("hello?") == [MENU]
    assert tester.texts("help me please") == [MENU]


def test_a_picture_gets_an_acknowledgement() -> None:
    tester = BotTester(create_bot())
    (text,) = tester.texts("", media=["https://api.twilio.com/x/Media/ME1"])
    assert "picture" in text
    (text,) = tester.texts("look", media=["https://a.example/1", "https://a.example/2"])
    assert "2 pictures" in text


def test_ticket_conversation_keeps_state_per_sender() -> None:
    tester = BotTester(create_bot())
    assert "Describe" in tester.texts("ticket", from_="+14155550111")[0]
    # Another contact is unaffected
    assert tester.texts("printer broken", from_="+14155550122") == [MENU]
    (opened,) = tester.texts("printer broken", from_="+14155550111")
    assert opened.startswith("Thanks, ticket #")
    # The conversation is over
    assert tester.texts("printer broken", from_="+14155550111") == [MENU]


def test_hours() -> None:
    assert "Monday" in BotTester(create_bot()).texts("Hours")[0]

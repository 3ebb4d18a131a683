"""STOP / START / HELP: the opt-out keywords carriers and Twilio honour.

Matched as Twilio matches them: the whole message is the keyword, in any case,
with surrounding whitespace ignored ("STOP please" is not an opt-out).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

__all__ = ["HELP_WORDS", "START_WORDS", "STOP_WORDS", "Keyword", "classify"]

Keyword = Literal["stop", "start", "help"]

STOP_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})

# Advanced Opt-Out (Messaging Services) tells us what it matched.
_OPT_OUT_TYPES: Mapping[str, Keyword] = {
    "STOP": "stop",
    "START": "start",
    "HELP": "help",
}


def classify(body: str, opt_out_type: str | None = None) -> Keyword | None:
    """Which opt-out keyword ``body`` is, if any.

    Args:
        body: the message text.
        opt_out_type: Twilio's ``OptOutType`` webhook parameter, sent when a
            Messaging Service's Advanced Opt-Out matched a (custom) keyword;
            it wins over the default list.
    """
    if opt_out_type:
        return _OPT_OUT_TYPES.get(opt_out_type.strip().upper())
    word = body.strip().upper()
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    if word in HELP_WORDS:
        return "help"
    return None

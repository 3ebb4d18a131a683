"""Load a bot from a ``module:attr`` string (``--bot``, ``TEXTWIRE_BOT``)."""

from __future__ import annotations

import importlib
import os
import sys

from textwire.bot import Bot
from textwire.errors import ConfigError

__all__ = ["DEFAULT_BOT", "load_bot"]

DEFAULT_BOT = "textwire.examples.helpdesk:create_bot"


def load_bot(spec: str | None = None) -> Bot:
    """Import ``module:attr`` and return the ``Bot`` it names.

    ``attr`` may be a ``Bot`` or a callable taking no arguments that returns
    one. ``None`` loads the help-desk example.

    Raises:
        ConfigError: the string, module or attribute is wrong, in words that
            say which.
    """
    spec = (spec or DEFAULT_BOT).strip()
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            f"bot {spec!r} is not of the form module:attr (e.g. mybot.app:bot)"
        )
    # Like `flask --app`: a bot module next to where the command runs is found
    # even when the `textwire` script's own folder is all that is on sys.path.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(f"bot module {module_name!r} not found") from exc
        raise
    try:
        target = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None
    if isinstance(target, Bot):
        return target
    if callable(target):
        bot = target()
        if isinstance(bot, Bot):
            return bot
        raise ConfigError(f"{spec} returned {type(bot).__name__}, not a textwire.Bot")
    raise ConfigError(f"{spec} is a {type(target).__name__}, not a Bot or a factory")

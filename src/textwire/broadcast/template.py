"""Message templates of a broadcast: ``Hi {first_name}, your order {order} shipped``.

Rendered by Jinja2's sandboxed environment with ``{`` … ``}`` as the field
delimiters (so the fields read as the issue's ``{first_name}``), Jinja's
filters and blocks still available (``{first_name|title}``, ``{% if vip
is defined %}…{% endif %}``). Every field must have a value in the row: a
missing or empty one is that row's error, never an empty hole in the text
(``StrictUndefined``); ``{nickname|default("there")}`` makes one optional.
"""

from __future__ import annotations

from collections.abc import Mapping

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from textwire.errors import BroadcastError

__all__ = ["MessageTemplate", "RowError"]


class RowError(ValueError):
    """One row cannot become a message; ``str()`` says why."""


def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        variable_start_string="{",
        variable_end_string="}",
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )


class MessageTemplate:
    """A compiled template and the fields it names.

    Example:
        >>> t = MessageTemplate("Hi {first_name|title}!")
        >>> t.fields
        frozenset({'first_name'})
        >>> t.render({"first_name": "ana"})
        'Hi Ana!'

    Raises:
        BroadcastError: a syntax error (with its line), or ``{{`` … ``}}``.
    """

    def __init__(self, text: str) -> None:
        if "{{" in text:
            raise BroadcastError(
                "template: write fields as {first_name}, not {{first_name}}"
            )
        self.text = text
        env = _environment()
        try:
            parsed = env.parse(text)
            self._template = env.from_string(parsed)
        except TemplateSyntaxError as exc:
            raise BroadcastError(
                f"template syntax error on line {exc.lineno}: {exc.message}"
            ) from None
        self.fields = frozenset(meta.find_undeclared_variables(parsed))

    def render(self, row: Mapping[str, str]) -> str:
        """The text for one row (empty cells count as missing).

        Raises:
            RowError: a field the row has no value for, or another error of
                the template on this row.
        """
        values = {name: value for name, value in row.items() if value}
        try:
            return self._template.render(values)
        except UndefinedError as exc:
            raise RowError(f"template field missing: {_undefined(exc)}") from None
        except SecurityError as exc:
            raise RowError(f"template refused: {exc}") from None
        except (TemplateError, TypeError, ValueError, ArithmeticError) as exc:
            raise RowError(f"template failed: {exc}") from None


def _undefined(exc: UndefinedError) -> str:
    # StrictUndefined says "'first_name' is undefined".
    text = str(exc.message or exc)
    return text.removesuffix(" is undefined").strip()

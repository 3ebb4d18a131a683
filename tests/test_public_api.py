"""The public surface: what `import textwire` gives, and what the core imports."""

from __future__ import annotations

import subprocess
import sys
import types

import textwire

CORE = [
    "textwire",
    "textwire.bot",
    "textwire.routing",
    "textwire.filters",
    "textwire.conversation",
    "textwire.context",
    "textwire.messages",
    "textwire.phone",
    "textwire.errors",
    "textwire.config",
    "textwire.codes",
    "textwire.transports",
]


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(textwire).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # from __future__
    } | {"filters"}
    assert set(textwire.__all__) == public
    assert len(textwire.__all__) == len(set(textwire.__all__))


def test_all_is_sorted_within_each_group() -> None:
    core = textwire.__all__[: textwire.__all__.index("AmbiguousSendError")]
    errors = textwire.__all__[len(core) :]
    assert core == sorted(core)
    assert errors == sorted(errors)
    assert all(issubclass(getattr(textwire, name), Exception) for name in errors)


def test_core_imports_no_flask_twilio_or_sql() -> None:
    code = (
        "import sys\n"
        f"for m in {CORE!r}: __import__(m)\n"
        "bad = [m for m in ('flask', 'twilio', 'sqlalchemy', 'werkzeug') "
        "if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_every_error_is_a_textwire_error() -> None:
    for name in textwire.__all__:
        value = getattr(textwire, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, textwire.TextwireError), name

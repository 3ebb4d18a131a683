"""The public surface: what `import textwire` gives, and what the core imports."""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path

import textwire

CORE = [
    "textwire",
    "textwire.bot",
    "textwire.routing",
    "textwire.filters",
    "textwire.conversation",
    "textwire.context",
    "textwire.middleware",
    "textwire.media",
    "textwire.messages",
    "textwire.optout",
    "textwire.phone",
    "textwire.errors",
    "textwire.config",
    "textwire.codes",
    "textwire.status",
    "textwire.ratelimit",
    "textwire.quiet",
    "textwire.when",
    "textwire.sending",
    "textwire.transports",
    "textwire.handoff",
    "textwire.attachments",
]

SRC = Path(textwire.__file__).parent


def _imports(module: str) -> set[str]:
    """The textwire modules ``module`` imports, at run time or only for type
    checking (a cycle through ``if TYPE_CHECKING:`` is a cycle all the same)."""
    path = SRC.joinpath(*module.split(".")[1:])
    file = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                base = module.rsplit(".", node.level - (1 if path.is_dir() else 0))[0]
                name = f"{base}.{node.module}"
            else:
                name = node.module
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in CORE and name != module}


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


def test_the_core_modules_import_each_other_without_a_cycle() -> None:
    # bot → context → conversation → filters → messages: each only downward.
    graph = {module: _imports(module) - {"textwire"} for module in CORE[1:]}
    assert graph["textwire.filters"].isdisjoint(
        {"textwire.context", "textwire.conversation", "textwire.bot"}
    )
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, " → ".join([*visiting, module])
        visiting.append(module)
        for dep in sorted(graph.get(module, ())):
            visit(dep)
        visiting.pop()
        done.add(module)

    for module in graph:
        visit(module)

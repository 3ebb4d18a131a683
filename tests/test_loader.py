"""Loading a bot the way users name it, and where its media are found."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from textwire import Bot
from textwire.cli import main
from textwire.errors import ConfigError
from textwire.loader import load_bot

BOT_SOURCE = """
from textwire import Bot

bot = Bot(name="mine", media_folder="media")

def create_bot():
    return Bot(name="made")
"""


@pytest.fixture
def bot_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "mybot_for_loader.py").write_text(BOT_SOURCE)
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "menu.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    monkeypatch.chdir(tmp_path)
    # The test runner put "" or the repo on sys.path; a script would not.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])
    yield tmp_path
    sys.modules.pop("mybot_for_loader", None)


def test_a_bot_module_in_the_working_directory_is_found(bot_dir: Path) -> None:
    bot = load_bot("mybot_for_loader:bot")
    assert bot.name == "mine"
    assert load_bot("mybot_for_loader:create_bot").name == "made"


def test_a_relative_media_folder_is_relative_to_where_the_bot_starts(
    bot_dir: Path,
) -> None:
    bot = load_bot("mybot_for_loader:bot")
    assert bot.media_folder == bot_dir / "media"
    assert (bot.media_folder / "menu.png").is_file()


@pytest.mark.parametrize(
    ("spec", "phrase"),
    [
        ("nosuchmodule_xyz:bot", "not found"),
        ("textwire:nothing_here", "no attribute"),
        ("textwire:__version__", "not a Bot"),
        ("no-colon", "module:attr"),
    ],
)
def test_bad_specs_are_config_errors(spec: str, phrase: str) -> None:
    with pytest.raises(ConfigError, match=phrase):
        load_bot(spec)


def test_default_is_the_help_desk() -> None:
    bot = load_bot(None)
    assert isinstance(bot, Bot) and bot.name == "helpdesk"


def test_run_on_a_busy_port_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            main,
            ["run", "--dry-run", "--port", str(port)],
            env={
                "TEXTWIRE_DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}",
                "TWILIO_AUTH_TOKEN": "",
                "COLUMNS": "200",
            },
        )
    assert result.exit_code == 1
    assert "already in use" in result.output
    assert "Traceback" not in result.output

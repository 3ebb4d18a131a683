"""The ``textwire`` command line, through click's CliRunner.

Every invocation gets a complete environment: each setting textwire reads is
set (blank when unwanted, which Settings ignores), since CliRunner's ``env``
only overlays os.environ. The working directory is an empty tmp_path, so no
stray ``.env`` is read. ``run`` is only exercised on its error paths, which
exit before serving.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from textwire import phone
from textwire.cli import main
from textwire.config import Settings
from textwire.storage.sql import SqlStore

from .conftest import ACCOUNT_SID, AUTH_TOKEN, BOT_NUMBER, TwilioAPI

TO_RAW = "(415) 555-0199"
TO_E164 = "+14155550199"
UNREACHABLE_API = "http://127.0.0.1:9"  # nothing listens; must never be called


def _all_setting_names() -> list[str]:
    """Every variable Settings might read, under either naming scheme."""
    names = []
    for field in dataclasses.fields(Settings):
        names.append("TEXTWIRE_" + field.name.upper())
        if field.name.startswith("twilio_"):
            names.append(field.name.upper())
    return names


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An empty working directory; logging and the default region put back."""
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quieted = ["twilio.http_client", "waitress.queue", "alembic"]
    levels = {name: logging.getLogger(name).level for name in quieted}
    region = phone.get_default_region()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)
    phone.set_default_region(region)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cli.db"


@pytest.fixture
def cli_env(db_path: Path) -> dict[str, str]:
    """Credentials and sender set; the API URL points nowhere (override it)."""
    env = dict.fromkeys(_all_setting_names(), "")
    env.update(
        {
            "TEXTWIRE_DATABASE_URL": f"sqlite:///{db_path}",
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_PHONE_NUMBER": BOT_NUMBER,
            "TEXTWIRE_TWILIO_API_URL": UNREACHABLE_API,
            "TEXTWIRE_TWILIO_TIMEOUT": "5",
            "TEXTWIRE_DEFAULT_REGION": "US",
            "TEXTWIRE_BACKOFF_BASE": "0.01",
            "COLUMNS": "200",
            "NO_COLOR": "1",
        }
    )
    return env


@pytest.fixture
def api_env(cli_env: dict[str, str], twilio_api: TwilioAPI) -> dict[str, str]:
    return {**cli_env, "TEXTWIRE_TWILIO_API_URL": twilio_api.url}


def invoke(
    args: list[str], env: dict[str, str], *, expect_success: bool = False
) -> Result:
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    if expect_success:
        assert result.exit_code == 0, result.output
    return result


def usage_error(result: Result, phrase: str) -> str:
    """Assert a usage error (exit 2) with one ``Error:`` line containing phrase."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if "Error:" in line]
    assert len(errors) == 1, result.output
    assert phrase in errors[0], result.output
    return errors[0]


def outbox_rows(db_path: Path) -> list[dict[str, Any]]:
    if not db_path.exists():
        return []
    store = SqlStore(f"sqlite:///{db_path}")
    try:
        if store.current_revision() is None:
            return []
        rows = []
        outbox_id = 1
        while (row := store.outbox.row(outbox_id)) is not None:
            rows.append(row)
            outbox_id += 1
        return rows
    finally:
        store.dispose()


# -- help and version --------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["-h"],
        ["send", "--help"],
        ["run", "--help"],
        ["worker", "--help"],
        ["db", "upgrade", "--help"],
    ],
)
def test_help(args: list[str], cli_env: dict[str, str]) -> None:
    result = invoke(args, cli_env, expect_success=True)

    assert "Usage:" in result.output


def test_main_help_lists_the_commands(cli_env: dict[str, str]) -> None:
    result = invoke(["--help"], cli_env, expect_success=True)

    for command in ("run", "worker", "send", "db", "--log-format", "--log-level"):
        assert command in result.output


def test_send_help_lists_its_options(cli_env: dict[str, str]) -> None:
    result = invoke(["send", "--help"], cli_env, expect_success=True)

    for option in ("TO", "BODY", "--media", "--queue-only", "--timeout"):
        assert option in result.output


def test_version(cli_env: dict[str, str]) -> None:
    result = invoke(["--version"], cli_env, expect_success=True)

    assert version("textwire") in result.output


def test_python_dash_m(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "textwire", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    assert "send" in proc.stdout


# -- send --------------------------------------------------------------------


def test_send_mms(api_env: dict[str, str], twilio_api: TwilioAPI) -> None:
    result = invoke(
        [
            "send",
            TO_RAW,
            "hello",
            "--media",
            "https://x.example/a.png",
            "--media",
            "https://x.example/b.png",
        ],
        api_env,
        expect_success=True,
    )

    assert len(twilio_api.creates) == 1
    create = twilio_api.creates[0]
    sid = _sid_in(result.output)
    assert sid.startswith("SM")
    assert f"sent: {sid}" in result.output
    assert "GSM-7" in result.output
    assert "1 segment" in result.output
    assert "2 media" in result.output
    form = create["form"]
    assert form["To"] == [TO_E164]
    assert form["From"] == [BOT_NUMBER]
    assert form["Body"] == ["hello"]
    assert form["MediaUrl"] == ["https://x.example/a.png", "https://x.example/b.png"]
    assert create["auth"] == ACCOUNT_SID
    assert TO_E164 not in result.output


def _sid_in(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("sent: ")]
    assert len(lines) == 1, output
    return lines[0].removeprefix("sent: ").split()[0]


def test_send_marks_the_outbox_row_sent(
    api_env: dict[str, str], twilio_api: TwilioAPI, db_path: Path
) -> None:
    result = invoke(["send", TO_RAW, "hello"], api_env, expect_success=True)

    rows = outbox_rows(db_path)
    assert len(rows) == 1
    assert rows[0]["status"] == "sent"
    assert rows[0]["sid"] == _sid_in(result.output)


def test_send_emoji_body_is_ucs2(
    api_env: dict[str, str], twilio_api: TwilioAPI
) -> None:
    result = invoke(["send", TO_RAW, "on my way 🚗"], api_env, expect_success=True)

    assert "UCS-2" in result.output
    assert "GSM-7" not in result.output
    assert "'🚗'" in result.output
    assert len(twilio_api.creates) == 1
    assert twilio_api.creates[0]["form"]["Body"] == ["on my way 🚗"]


def test_send_long_gsm_body_counts_segments(
    api_env: dict[str, str], twilio_api: TwilioAPI
) -> None:
    result = invoke(["send", TO_RAW, "a" * 161], api_env, expect_success=True)

    assert "GSM-7, 161 chars, 2 segments" in result.output


def test_send_rejected_by_twilio(
    api_env: dict[str, str], twilio_api: TwilioAPI, db_path: Path
) -> None:
    twilio_api.failures.append(
        (
            400,
            {
                "code": 21211,
                "message": "The 'To' number is not a valid phone number.",
                "more_info": "https://www.twilio.com/docs/errors/21211",
                "status": 400,
            },
            {},
        )
    )

    result = invoke(["send", TO_RAW, "hello"], api_env)

    assert result.exit_code == 1, result.output
    assert "21211" in result.output
    assert "failed" in result.output
    assert "sent:" not in result.output
    assert TO_E164 not in result.output
    assert "4155550199" not in result.output
    assert len(twilio_api.creates) == 1  # a permanent error is not retried
    assert [row["status"] for row in outbox_rows(db_path)] == ["failed"]


def test_send_queue_only(
    api_env: dict[str, str], twilio_api: TwilioAPI, db_path: Path
) -> None:
    result = invoke(
        ["send", TO_RAW, "hello", "--queue-only"], api_env, expect_success=True
    )

    assert "queued as outbox #1" in result.output
    assert "sent:" not in result.output
    assert twilio_api.creates == []
    rows = outbox_rows(db_path)
    assert len(rows) == 1
    assert rows[0]["status"] == "queued"


def test_send_queue_only_needs_no_credentials(
    cli_env: dict[str, str], db_path: Path
) -> None:
    env = {**cli_env, "TWILIO_ACCOUNT_SID": "", "TWILIO_AUTH_TOKEN": ""}

    result = invoke(["send", TO_RAW, "hi", "--queue-only"], env, expect_success=True)

    assert "queued as outbox #1" in result.output
    assert len(outbox_rows(db_path)) == 1


def test_send_queue_only_twice_numbers_the_outbox(cli_env: dict[str, str]) -> None:
    invoke(["send", TO_RAW, "one", "--queue-only"], cli_env, expect_success=True)
    result = invoke(
        ["send", TO_RAW, "two", "--queue-only"], cli_env, expect_success=True
    )

    assert "queued as outbox #2" in result.output


def test_send_reads_numbers_in_the_default_region(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "TEXTWIRE_DEFAULT_REGION": "gb"}

    result = invoke(
        ["send", "020 7946 0018", "hi", "--queue-only"], env, expect_success=True
    )

    assert "to +4420***0018" in result.output


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["send", "12", "hi"], "Invalid value for TO"),
        (["send", "12", "hi"], "too short"),
        (["send", "call-me", "hi"], "letters"),
        (
            ["send", TO_RAW, "hi"]
            + [f"--media=https://x.example/{n}.png" for n in range(11)],
            "at most 10 media",
        ),
        (
            ["send", TO_RAW, "hi", "--media", "ftp://x.example/a.png"],
            "http:// or https://",
        ),
        (["send", TO_RAW, "x" * 1601], "1600"),
        (["send"], "Missing argument 'TO'"),
        (["send", TO_RAW, "hi", "--bogus"], "No such option"),
        (["send", TO_RAW, "hi", "--timeout", "0"], "--timeout"),
        (["--log-format", "xml", "send", TO_RAW], "--log-format"),
        (["nosuchcommand"], "No such command"),
    ],
)
def test_send_bad_input(
    args: list[str], phrase: str, api_env: dict[str, str], twilio_api: TwilioAPI
) -> None:
    result = invoke(args, api_env)

    usage_error(result, phrase)
    assert twilio_api.creates == []


def test_send_bad_input_queues_nothing(cli_env: dict[str, str], db_path: Path) -> None:
    result = invoke(["send", "12", "hi", "--queue-only"], cli_env)

    usage_error(result, "TO")
    assert outbox_rows(db_path) == []


def test_send_without_credentials(cli_env: dict[str, str], db_path: Path) -> None:
    env = {**cli_env, "TWILIO_ACCOUNT_SID": ""}

    result = invoke(["send", TO_RAW, "hi"], env)

    line = usage_error(result, "TWILIO_ACCOUNT_SID")
    assert "--dry-run" in line or "--queue-only" in line
    assert outbox_rows(db_path) == []


def test_send_without_sender(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "TWILIO_PHONE_NUMBER": ""}

    result = invoke(["send", TO_RAW, "hi", "--queue-only"], env)

    usage_error(result, "TWILIO_PHONE_NUMBER")


@pytest.mark.parametrize(
    ("var", "raw", "phrase"),
    [
        ("TEXTWIRE_DEFAULT_REGION", "USA", "TEXTWIRE_DEFAULT_REGION"),
        ("TEXTWIRE_DEFAULT_REGION", "ZZ", "TEXTWIRE_DEFAULT_REGION"),
        ("TEXTWIRE_MAX_SEND_ATTEMPTS", "lots", "TEXTWIRE_MAX_SEND_ATTEMPTS"),
        ("TEXTWIRE_MAX_SEND_ATTEMPTS", "0", "TEXTWIRE_MAX_SEND_ATTEMPTS"),
        ("TEXTWIRE_VALIDATE_SIGNATURES", "maybe", "TEXTWIRE_VALIDATE_SIGNATURES"),
        ("TEXTWIRE_PUBLIC_URL", "bot.example.com", "http"),
    ],
)
def test_bad_setting_is_a_usage_error(
    var: str, raw: str, phrase: str, cli_env: dict[str, str], db_path: Path
) -> None:
    env = {**cli_env, var: raw}

    result = invoke(["send", TO_RAW, "hi", "--queue-only"], env)

    usage_error(result, phrase)
    assert outbox_rows(db_path) == []


def test_bad_setting_in_env_file_of_the_working_directory(
    cli_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("TEXTWIRE_WORKER_BATCH_SIZE=many\n")
    monkeypatch.delenv("TEXTWIRE_WORKER_BATCH_SIZE", raising=False)
    env = dict(cli_env)
    # Unset, not blank: a blank variable would hide the file's value.
    del env["TEXTWIRE_WORKER_BATCH_SIZE"]

    result = invoke(["send", TO_RAW, "hi", "--queue-only"], env)

    usage_error(result, "TEXTWIRE_WORKER_BATCH_SIZE")


# -- logging -----------------------------------------------------------------


def test_json_logs_for_send_queue_only(cli_env: dict[str, str]) -> None:
    result = invoke(
        [
            "--log-format",
            "json",
            "--log-level",
            "INFO",
            "send",
            TO_RAW,
            "hello",
            "--queue-only",
        ],
        cli_env,
        expect_success=True,
    )

    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "expected at least one log line (the SQLite migration)"
    for line in lines:
        entry = json.loads(line)
        assert {"time", "level", "logger", "message"} <= entry.keys()
        assert TO_E164 not in line
        assert "4155550199" not in line
    assert any(json.loads(line)["level"] == "info" for line in lines)
    assert "queued as outbox #1" in result.stdout
    assert "{" not in result.stdout


def test_json_logs_for_a_real_send_hide_the_number(
    api_env: dict[str, str], twilio_api: TwilioAPI
) -> None:
    result = invoke(
        ["--log-format", "json", "--log-level", "DEBUG", "send", TO_RAW, "hello"],
        api_env,
        expect_success=True,
    )

    log_lines = [line for line in result.stderr.splitlines() if line.startswith("{")]
    assert log_lines
    for line in log_lines:
        json.loads(line)
    assert TO_E164 not in result.stderr
    assert "4155550199" not in result.stderr
    assert len(twilio_api.creates) == 1


def test_text_logs_by_default(cli_env: dict[str, str]) -> None:
    result = invoke(
        ["send", TO_RAW, "hello", "--queue-only"], cli_env, expect_success=True
    )

    assert "INFO" in result.stderr
    assert "textwire.storage" in result.stderr
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.stderr.splitlines()[0])


def test_log_level_warning_hides_info(cli_env: dict[str, str]) -> None:
    result = invoke(
        ["--log-level", "warning", "send", TO_RAW, "hello", "--queue-only"],
        cli_env,
        expect_success=True,
    )

    assert result.stderr == ""


# -- db upgrade --------------------------------------------------------------


def test_db_upgrade_then_again(cli_env: dict[str, str], db_path: Path) -> None:
    first = invoke(["db", "upgrade"], cli_env, expect_success=True)

    assert "upgraded" in first.output
    assert "empty" in first.output
    assert db_path.exists()
    store = SqlStore(f"sqlite:///{db_path}")
    try:
        head = store.head_revision()
        assert head is not None
        assert store.current_revision() == head
    finally:
        store.dispose()
    assert head in first.output

    second = invoke(["db", "upgrade"], cli_env, expect_success=True)

    assert "already at revision" in second.output
    assert head in second.output
    assert "upgraded" not in second.output


def test_db_upgrade_unsupported_database(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "TEXTWIRE_DATABASE_URL": "mysql://x"}

    result = invoke(["db", "upgrade"], env)

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "error:" in result.output
    assert "mysql" in result.output
    assert "sqlite" in result.output


def test_db_upgrade_bad_setting(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "TEXTWIRE_DEFAULT_REGION": "USA"}

    result = invoke(["db", "upgrade"], env)

    usage_error(result, "TEXTWIRE_DEFAULT_REGION")


# -- run (error paths only) --------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "phrase"),
    [
        ("nosuch.module:bot", "not found"),
        ("textwire:__version__", "not a Bot"),
        ("textwire:no_such_attr", "no attribute"),
        ("missingcolon", "module:attr"),
        (":bot", "module:attr"),
    ],
)
def test_run_bad_bot(spec: str, phrase: str, cli_env: dict[str, str]) -> None:
    result = invoke(["run", "--dry-run", "--bot", spec], cli_env)

    usage_error(result, phrase)
    assert "serving" not in result.output


def test_run_bad_bot_from_the_environment(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "TEXTWIRE_BOT": "nosuch.module:bot"}

    result = invoke(["run", "--dry-run"], env)

    usage_error(result, "not found")


def test_run_without_credentials(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "TWILIO_ACCOUNT_SID": "", "TWILIO_AUTH_TOKEN": ""}

    result = invoke(["run"], env)

    line = usage_error(result, "TWILIO_ACCOUNT_SID")
    assert "--dry-run" in line
    assert "serving" not in result.output


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["run", "--port", "0"], "--port"),
        (["run", "--port", "http"], "--port"),
        (["run", "--threads", "65"], "--threads"),
    ],
)
def test_run_bad_options(args: list[str], phrase: str, cli_env: dict[str, str]) -> None:
    usage_error(invoke(args, cli_env), phrase)


# -- worker (error path only) ------------------------------------------------


def test_worker_without_credentials(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "TWILIO_AUTH_TOKEN": ""}

    result = invoke(["worker"], env)

    usage_error(result, "TWILIO_AUTH_TOKEN")

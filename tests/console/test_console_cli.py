"""The console from the command line: `textwire sandbox` serves it and prints
where and with which password; `textwire console hash-password` makes the
hash for TEXTWIRE_CONSOLE_PASSWORD_HASH."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import requests
from click.testing import CliRunner
from werkzeug.security import check_password_hash

from textwire.cli import main
from textwire.config import Settings

from .conftest import csrf_of


def test_hash_password_prints_a_hash_the_console_accepts() -> None:
    result = CliRunner().invoke(
        main, ["console", "hash-password"], input="opensesame\nopensesame\n"
    )
    assert result.exit_code == 0, result.output
    hashed = result.output.strip().splitlines()[-1]
    assert check_password_hash(hashed, "opensesame")
    assert "opensesame" not in hashed
    assert Settings(console_password_hash=hashed).console_enabled
    short = CliRunner().invoke(main, ["console", "hash-password", "--password", "abc"])
    assert short.exit_code == 2 and "8 characters" in short.output


def test_the_sandbox_serves_the_console_and_prints_its_password(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TWILIO_", "TEXTWIRE_"))
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "textwire", "sandbox", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        for line in process.stdout:
            lines.append(line)
            if "client.api.base_url" in line:
                break
        output = "".join(lines)
        console = re.search(r"console\s+(http://127\.0\.0\.1:\d+/console/)", output)
        password = re.search(r"password\s+(\S+)", output)
        assert console and password, output
        with requests.Session() as browser:
            login = browser.get(console.group(1), timeout=10)
            assert login.url.startswith(console.group(1) + "login")
            answer = browser.post(
                console.group(1) + "login",
                data={
                    "csrf_token": csrf_of(login.text),
                    "name": "Sam",
                    "password": password.group(1),
                },
                timeout=10,
            )
            assert answer.status_code == 200 and "Conversations" in answer.text
            assert 'data-testid="operator">Sam<' in answer.text
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

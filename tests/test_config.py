"""Settings.from_env: names, casts, validation, the .env file, and secrets in repr.

Every test passes ``environ`` and ``env_file`` explicitly: os.environ is never
read or changed here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from textwire.config import DEFAULT_APOLOGY, Settings
from textwire.errors import ConfigError

TOKEN = "super-secret-token-0123456789"


def from_env(**environ: str) -> Settings:
    return Settings.from_env(environ=environ, env_file=None)


# -- defaults ----------------------------------------------------------------


def test_defaults_from_an_empty_environment() -> None:
    settings = from_env()

    assert settings.database_url == "sqlite:///textwire.db"
    assert settings.default_region == "US"
    assert settings.twilio_api_url == "https://api.twilio.com"
    assert settings.validate_signatures is True
    assert settings.twilio_timeout == 10.0
    assert settings.twilio_account_sid is None
    assert settings.twilio_auth_token is None
    assert settings.twilio_phone_number is None
    assert settings.twilio_messaging_service_sid is None
    assert settings.public_url is None
    assert settings.bot is None
    assert settings.max_send_attempts == 6
    assert settings.apology == DEFAULT_APOLOGY
    assert settings.has_twilio_credentials is False


def test_from_env_equals_the_dataclass_defaults() -> None:
    assert from_env() == Settings()


# -- variable names ----------------------------------------------------------


def test_every_variable_name() -> None:
    settings = from_env(
        TWILIO_ACCOUNT_SID="AC123",
        TWILIO_AUTH_TOKEN=TOKEN,
        TWILIO_PHONE_NUMBER="+14155550100",
        TWILIO_MESSAGING_SERVICE_SID="MG123",
        TEXTWIRE_TWILIO_API_URL="http://127.0.0.1:9999",
        TEXTWIRE_TWILIO_TIMEOUT="2.5",
        TEXTWIRE_PUBLIC_URL="https://bot.example.com",
        TEXTWIRE_DATABASE_URL="sqlite:///other.db",
        TEXTWIRE_DEFAULT_REGION="GB",
        TEXTWIRE_BOT="mybot.app:bot",
        TEXTWIRE_VALIDATE_SIGNATURES="false",
        TEXTWIRE_MAX_REQUEST_BYTES="2048",
        TEXTWIRE_MAX_SEND_ATTEMPTS="3",
        TEXTWIRE_BACKOFF_BASE="0.5",
        TEXTWIRE_BACKOFF_CAP="30",
        TEXTWIRE_WORKER_POLL_INTERVAL="0.2",
        TEXTWIRE_WORKER_BATCH_SIZE="5",
        TEXTWIRE_WORKER_CONCURRENCY="2",
        TEXTWIRE_LEASE_SECONDS="15",
        TEXTWIRE_APOLOGY="Oops.",
    )

    assert settings == Settings(
        twilio_account_sid="AC123",
        twilio_auth_token=TOKEN,
        twilio_phone_number="+14155550100",
        twilio_messaging_service_sid="MG123",
        twilio_api_url="http://127.0.0.1:9999",
        twilio_timeout=2.5,
        public_url="https://bot.example.com",
        database_url="sqlite:///other.db",
        default_region="GB",
        bot="mybot.app:bot",
        validate_signatures=False,
        max_request_bytes=2048,
        max_send_attempts=3,
        backoff_base=0.5,
        backoff_cap=30.0,
        worker_poll_interval=0.2,
        worker_batch_size=5,
        worker_concurrency=2,
        lease_seconds=15.0,
        apology="Oops.",
    )
    assert settings.has_twilio_credentials is True


def test_twilio_fields_without_the_textwire_prefix_are_not_read() -> None:
    settings = from_env(
        TEXTWIRE_TWILIO_ACCOUNT_SID="AC123",
        TWILIO_API_URL="http://127.0.0.1:1",
        TWILIO_TIMEOUT="3",
        DATABASE_URL="sqlite:///nope.db",
    )

    assert settings == Settings()


def test_casts_produce_the_field_types() -> None:
    settings = from_env(
        TEXTWIRE_MAX_SEND_ATTEMPTS="7",
        TEXTWIRE_TWILIO_TIMEOUT="3",
        TEXTWIRE_VALIDATE_SIGNATURES="0",
    )

    assert settings.max_send_attempts == 7
    assert type(settings.max_send_attempts) is int
    assert settings.twilio_timeout == 3.0
    assert type(settings.twilio_timeout) is float
    assert settings.validate_signatures is False


def test_values_are_stripped() -> None:
    settings = from_env(
        TEXTWIRE_MAX_SEND_ATTEMPTS="  4 ",
        TWILIO_ACCOUNT_SID=" AC123\n",
        TEXTWIRE_VALIDATE_SIGNATURES=" no ",
    )

    assert settings.max_send_attempts == 4
    assert settings.twilio_account_sid == "AC123"
    assert settings.validate_signatures is False


# -- bool --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("1", True),
        ("yes", True),
        ("YES", True),
        ("on", True),
        ("On", True),
        ("false", False),
        ("FALSE", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("No", False),
        ("off", False),
        ("OFF", False),
    ],
)
def test_bool_values(raw: str, expected: bool) -> None:
    settings = from_env(TEXTWIRE_VALIDATE_SIGNATURES=raw)

    assert settings.validate_signatures is expected


@pytest.mark.parametrize("raw", ["maybe", "2", "y", "enabled", "truee"])
def test_bad_bool_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_env(TEXTWIRE_VALIDATE_SIGNATURES=raw)

    assert "TEXTWIRE_VALIDATE_SIGNATURES" in str(info.value)
    assert repr(raw) in str(info.value)


# -- int and float -----------------------------------------------------------


@pytest.mark.parametrize(
    "var",
    [
        "TEXTWIRE_MAX_SEND_ATTEMPTS",
        "TEXTWIRE_MAX_REQUEST_BYTES",
        "TEXTWIRE_WORKER_BATCH_SIZE",
        "TEXTWIRE_WORKER_CONCURRENCY",
    ],
)
@pytest.mark.parametrize("raw", ["lots", "2.5", "1e3", "0x10", "6 times"])
def test_bad_int_names_the_variable_and_the_value(var: str, raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_env(**{var: raw})

    assert var in str(info.value)
    assert repr(raw) in str(info.value)


@pytest.mark.parametrize(
    "var",
    [
        "TEXTWIRE_TWILIO_TIMEOUT",
        "TEXTWIRE_BACKOFF_BASE",
        "TEXTWIRE_BACKOFF_CAP",
        "TEXTWIRE_WORKER_POLL_INTERVAL",
        "TEXTWIRE_LEASE_SECONDS",
    ],
)
@pytest.mark.parametrize("raw", ["soon", "1,5", "10s", "nan", "inf", "-inf"])
def test_bad_float_names_the_variable_and_the_value(var: str, raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_env(**{var: raw})

    assert var in str(info.value)
    assert repr(raw) in str(info.value)


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("TEXTWIRE_TWILIO_TIMEOUT", "0"),
        ("TEXTWIRE_TWILIO_TIMEOUT", "-1.5"),
        ("TEXTWIRE_WORKER_POLL_INTERVAL", "0"),
        ("TEXTWIRE_LEASE_SECONDS", "-5"),
        ("TEXTWIRE_WORKER_BATCH_SIZE", "0"),
        ("TEXTWIRE_WORKER_CONCURRENCY", "-1"),
        ("TEXTWIRE_MAX_REQUEST_BYTES", "1023"),
    ],
)
def test_out_of_range_numbers(var: str, raw: str) -> None:
    # The error names the variable to fix.
    with pytest.raises(ConfigError, match=var):
        from_env(**{var: raw})


@pytest.mark.parametrize("raw", ["0", "-3"])
def test_max_send_attempts_must_be_positive(raw: str) -> None:
    with pytest.raises(
        ConfigError, match="TEXTWIRE_MAX_SEND_ATTEMPTS must be at least 1"
    ):
        from_env(TEXTWIRE_MAX_SEND_ATTEMPTS=raw)


def test_smallest_allowed_numbers() -> None:
    settings = from_env(
        TEXTWIRE_MAX_SEND_ATTEMPTS="1",
        TEXTWIRE_MAX_REQUEST_BYTES="1024",
        TEXTWIRE_TWILIO_TIMEOUT="0.001",
    )

    assert settings.max_send_attempts == 1
    assert settings.max_request_bytes == 1024
    assert settings.twilio_timeout == 0.001


# -- blank values ------------------------------------------------------------


@pytest.mark.parametrize("blank", ["", " ", "\t", "  \n"])
def test_blank_values_are_ignored(blank: str) -> None:
    settings = from_env(
        TWILIO_ACCOUNT_SID=blank,
        TWILIO_AUTH_TOKEN=blank,
        TEXTWIRE_DATABASE_URL=blank,
        TEXTWIRE_DEFAULT_REGION=blank,
        TEXTWIRE_PUBLIC_URL=blank,
        TEXTWIRE_TWILIO_API_URL=blank,
        TEXTWIRE_VALIDATE_SIGNATURES=blank,
        TEXTWIRE_MAX_SEND_ATTEMPTS=blank,
        TEXTWIRE_TWILIO_TIMEOUT=blank,
    )

    assert settings == Settings()


# -- URLs --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://bot.example.com/", "https://bot.example.com"),
        ("https://bot.example.com///", "https://bot.example.com"),
        ("https://bot.example.com/textwire/", "https://bot.example.com/textwire"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ],
)
def test_public_url_trailing_slash_is_stripped(raw: str, expected: str) -> None:
    assert from_env(TEXTWIRE_PUBLIC_URL=raw).public_url == expected


def test_api_url_trailing_slash_is_stripped() -> None:
    settings = from_env(TEXTWIRE_TWILIO_API_URL="http://127.0.0.1:9999/")

    assert settings.twilio_api_url == "http://127.0.0.1:9999"


@pytest.mark.parametrize(
    "raw",
    [
        "ftp://bot.example.com",
        "bot.example.com",
        "/twilio",
        "https://",
        "javascript:alert(1)",
    ],
)
@pytest.mark.parametrize("var", ["TEXTWIRE_PUBLIC_URL", "TEXTWIRE_TWILIO_API_URL"])
def test_urls_must_be_absolute_http(var: str, raw: str) -> None:
    with pytest.raises(ConfigError, match="http"):
        from_env(**{var: raw})


# -- region ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"), [("us", "US"), ("gb", "GB"), ("De", "DE")]
)
def test_region_is_upper_cased(raw: str, expected: str) -> None:
    assert from_env(TEXTWIRE_DEFAULT_REGION=raw).default_region == expected


@pytest.mark.parametrize("raw", ["USA", "U", "1A", "U.", "ZZ", "XX"])
def test_bad_region_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_env(TEXTWIRE_DEFAULT_REGION=raw)

    assert "TEXTWIRE_DEFAULT_REGION" in str(info.value)
    assert repr(raw) in str(info.value)


# -- .env file ---------------------------------------------------------------


def test_env_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# a comment\n"
        "TWILIO_ACCOUNT_SID=ACfromfile\n"
        f'TWILIO_AUTH_TOKEN="{TOKEN}"\n'
        "export TEXTWIRE_DEFAULT_REGION=gb\n"
        "TEXTWIRE_MAX_SEND_ATTEMPTS=2\n"
        "TEXTWIRE_VALIDATE_SIGNATURES=off\n",
        encoding="utf-8",
    )

    settings = Settings.from_env(environ={}, env_file=env_file)

    assert settings.twilio_account_sid == "ACfromfile"
    assert settings.twilio_auth_token == TOKEN
    assert settings.default_region == "GB"
    assert settings.max_send_attempts == 2
    assert settings.validate_signatures is False


def test_env_file_as_str_path(tmp_path: Path) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text("TEXTWIRE_DATABASE_URL=sqlite:///file.db\n", encoding="utf-8")

    settings = Settings.from_env(environ={}, env_file=str(env_file))

    assert settings.database_url == "sqlite:///file.db"


def test_environ_wins_over_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "TWILIO_ACCOUNT_SID=ACfromfile\n"
        "TEXTWIRE_DATABASE_URL=sqlite:///file.db\n"
        "TEXTWIRE_MAX_SEND_ATTEMPTS=2\n",
        encoding="utf-8",
    )

    settings = Settings.from_env(
        environ={
            "TWILIO_ACCOUNT_SID": "ACfromenv",
            "TEXTWIRE_MAX_SEND_ATTEMPTS": "9",
        },
        env_file=env_file,
    )

    assert settings.twilio_account_sid == "ACfromenv"
    assert settings.max_send_attempts == 9
    assert settings.database_url == "sqlite:///file.db"  # only in the file


def test_bad_value_in_env_file_names_the_variable(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("TEXTWIRE_TWILIO_TIMEOUT=fast\n", encoding="utf-8")

    with pytest.raises(ConfigError, match="TEXTWIRE_TWILIO_TIMEOUT"):
        Settings.from_env(environ={}, env_file=env_file)


def test_missing_env_file_is_not_an_error(tmp_path: Path) -> None:
    settings = Settings.from_env(environ={}, env_file=tmp_path / "absent.env")

    assert settings == Settings()


def test_env_file_none_reads_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("TWILIO_ACCOUNT_SID=ACfromfile\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    assert Settings.from_env(environ={}, env_file=None).twilio_account_sid is None
    # ...while the default env_file is the .env of the working directory.
    assert Settings.from_env(environ={}).twilio_account_sid == "ACfromfile"


# -- secrets -----------------------------------------------------------------


def test_repr_never_shows_the_auth_token() -> None:
    settings = from_env(TWILIO_ACCOUNT_SID="AC123", TWILIO_AUTH_TOKEN=TOKEN)

    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings)
    assert "AC123" in repr(settings)  # the repr is still useful
    assert settings.twilio_auth_token == TOKEN


def test_repr_of_replaced_settings_never_shows_the_auth_token() -> None:
    settings = Settings().replace(twilio_auth_token=TOKEN)

    assert TOKEN not in repr(settings)


# -- replace -----------------------------------------------------------------


def test_replace_returns_a_changed_copy() -> None:
    original = from_env(TWILIO_ACCOUNT_SID="AC123")

    changed = original.replace(bot="mybot:bot", validate_signatures=False)

    assert changed.bot == "mybot:bot"
    assert changed.validate_signatures is False
    assert changed.twilio_account_sid == "AC123"
    assert original.bot is None
    assert original.validate_signatures is True


def test_replace_validates_again() -> None:
    settings = Settings()

    assert settings.replace(default_region="gb").default_region == "GB"
    assert settings.replace(public_url="https://x.example/").public_url == (
        "https://x.example"
    )
    with pytest.raises(ConfigError):
        settings.replace(max_send_attempts=0)
    with pytest.raises(ConfigError):
        settings.replace(public_url="ftp://x.example")


def test_replace_rejects_unknown_fields() -> None:
    with pytest.raises(TypeError):
        Settings().replace(no_such_field=1)


def test_settings_are_frozen() -> None:
    settings = Settings()

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.bot = "x:y"  # type: ignore[misc]

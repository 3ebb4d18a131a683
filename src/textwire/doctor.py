"""``textwire doctor``: is this setup ready for real texts?

Each check is a function of its dependencies (a twilio client, a URL, a
clock …) returning a ``Check``; ``run_checks`` runs them all for the settings
and ``render`` draws the table. A failing check says what to do in ``fix``.

1. Twilio credentials: one cheap authenticated request (20003 → fail).
2. The sender number is in the account and can send SMS (no MMS: a warning).
3. The number's SmsUrl is TEXTWIRE_PUBLIC_URL + /twilio/sms (POST).
4. The public URL reaches this server: a request signed like Twilio's to
   ``/twilio/selftest`` (403: the signed URL and TEXTWIRE_PUBLIC_URL differ).
5. The database answers and is migrated.
6. The clock agrees with the ``Date`` of Twilio's answer within 60 s.
"""

from __future__ import annotations

import dataclasses
import enum
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.table import Table

from textwire.config import Settings
from textwire.errors import DevSetupError, StorageError
from textwire.tunnel import (
    DEFAULT_STATE_PATH,
    WEBHOOK_PATH,
    DevStateFile,
    connect_twilio,
    find_number,
    pretty_number,
    process_alive,
)
from textwire.web.selftest import SELFTEST_PATH

__all__ = [
    "MAX_CLOCK_SKEW",
    "Check",
    "Status",
    "all_passed",
    "check_clock",
    "check_credentials",
    "check_database",
    "check_number",
    "check_public_url",
    "check_webhook",
    "render",
    "resolve_public_url",
    "run_checks",
]

MAX_CLOCK_SKEW = timedelta(seconds=60)

Post = Callable[..., requests.Response]


class Status(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


_MARKS = {
    Status.OK: "[green]✔ ok[/]",
    Status.WARN: "[yellow]! warn[/]",
    Status.FAIL: "[bold red]✘ fail[/]",
    Status.SKIP: "[dim]– skip[/]",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's table."""

    name: str
    status: Status
    result: str
    fix: str = ""

    @property
    def passed(self) -> bool:
        return self.status in (Status.OK, Status.WARN)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _api_url(client: Any) -> str:
    return str(getattr(client.api, "base_url", "https://api.twilio.com")).rstrip("/")


def _probe(client: Any) -> Any:
    """One cheap authenticated GET: the account's first phone number."""
    url = (
        f"{_api_url(client)}/2010-04-01/Accounts/{client.account_sid}"
        "/IncomingPhoneNumbers.json"
    )
    return client.request("GET", url, params={"PageSize": 1})


_CREDENTIALS_FIX = (
    "copy TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN from https://console.twilio.com "
    "(Account Info): live credentials, primary token, no stray spaces"
)


def check_credentials(client: Any | None) -> Check:
    """Twilio accepts the credentials (``client`` None: they are not set)."""
    name = "Twilio credentials"
    if client is None:
        return Check(
            name,
            Status.FAIL,
            "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set",
            "put them in .env: " + _CREDENTIALS_FIX.split(" from ", 1)[1],
        )
    try:
        response = _probe(client)
    except Exception as exc:
        return Check(
            name,
            Status.FAIL,
            f"could not reach Twilio's API at {_api_url(client)} "
            f"({type(exc).__name__})",
            "check the network connection and TEXTWIRE_TWILIO_API_URL",
        )
    status = int(response.status_code)
    if status == 401 or _error_code(response) == 20003:
        return Check(
            name,
            Status.FAIL,
            "Twilio rejected TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN (20003)",
            _CREDENTIALS_FIX,
        )
    if status >= 400:
        code = _error_code(response)
        return Check(
            name,
            Status.FAIL,
            f"Twilio answered HTTP {status}" + (f" ({code})" if code else ""),
            "see https://www.twilio.com/docs/api/errors" + (f"/{code}" if code else ""),
        )
    return Check(name, Status.OK, f"account {client.account_sid} accepted them")


def _error_code(response: Any) -> int | None:
    import json

    try:
        payload = json.loads(response.text)
    except (ValueError, TypeError):
        return None
    code = payload.get("code") if isinstance(payload, dict) else None
    return code if isinstance(code, int) else None


def check_number(
    client: Any, phone_number: str | None, *, region: str | None = None
) -> Check:
    """The number is the account's and can send SMS (and MMS: else a warning)."""
    name = "sender number"
    if not phone_number:
        return Check(
            name,
            Status.FAIL,
            "TWILIO_PHONE_NUMBER is not set",
            "set it to your Twilio number, in any format (e.g. (415) 555-0100)",
        )
    try:
        number = find_number(client, phone_number, region=region)
    except DevSetupError as exc:
        return Check(name, Status.FAIL, exc.message, exc.hint)
    pretty = pretty_number(number.phone_number)
    if not number.sms:
        return Check(
            name,
            Status.FAIL,
            f"{pretty} has no SMS capability (a voice-only number)",
            "use an SMS-capable number of the account",
        )
    if not number.mms:
        return Check(
            name,
            Status.WARN,
            f"{pretty} can send SMS but not MMS: replies with pictures fail (21621)",
            "for pictures use a US or Canadian number with MMS",
        )
    return Check(name, Status.OK, f"{pretty} is the account's; SMS and MMS")


def check_webhook(
    client: Any,
    phone_number: str | None,
    public_url: str | None,
    *,
    region: str | None = None,
) -> Check:
    """The number's SmsUrl is ``public_url`` + ``/twilio/sms``, with POST."""
    name = "number's webhook"
    if not public_url:
        return Check(
            name,
            Status.FAIL,
            "TEXTWIRE_PUBLIC_URL is not set: nothing to compare the SmsUrl with",
            "set it to the https URL Twilio calls, or run `textwire dev` (it sets "
            "both)",
        )
    if not phone_number:
        return Check(name, Status.SKIP, "needs TWILIO_PHONE_NUMBER")
    try:
        number = find_number(client, phone_number, region=region)
    except DevSetupError:
        return Check(name, Status.SKIP, "needs the sender number (see above)")
    expected = public_url.rstrip("/") + WEBHOOK_PATH
    hooks = number.webhooks
    set_it = (
        f"set the number's 'A message comes in' webhook to {expected} (HTTP POST), "
        "or run `textwire dev`"
    )
    if hooks.sms_application_sid:
        return Check(
            name,
            Status.FAIL,
            f"the number's texts go to TwiML app {hooks.sms_application_sid}, "
            "which ignores SmsUrl",
            set_it,
        )
    if hooks.sms_url.rstrip("/") != expected:
        return Check(
            name,
            Status.FAIL,
            f"SmsUrl is {hooks.sms_url or 'not set'}, not {expected}",
            set_it,
        )
    if hooks.sms_method.upper() != "POST":
        return Check(
            name, Status.FAIL, f"SmsUrl is called with {hooks.sms_method}", set_it
        )
    return Check(name, Status.OK, f"{expected} (POST)")


def check_public_url(
    public_url: str | None,
    auth_token: str | None,
    *,
    post: Post = requests.post,
    timeout: float = 10.0,
) -> Check:
    """A request signed like Twilio's reaches this server's self-test."""
    name = "public URL reachable"
    if not public_url:
        return Check(name, Status.SKIP, "needs TEXTWIRE_PUBLIC_URL")
    if not auth_token:
        return Check(name, Status.SKIP, "needs TWILIO_AUTH_TOKEN to sign the request")
    from twilio.request_validator import RequestValidator

    url = public_url.rstrip("/") + SELFTEST_PATH
    nonce = secrets.token_hex(8)
    form = {"Nonce": nonce}
    signature = RequestValidator(auth_token).compute_signature(url, form)
    headers = {
        "X-Twilio-Signature": signature,
        "User-Agent": "textwire-doctor",
        "ngrok-skip-browser-warning": "1",
    }
    start = "start `textwire run` (or `textwire dev`) and make sure the public URL "
    try:
        response = post(
            url, data=form, headers=headers, timeout=timeout, allow_redirects=False
        )
    except requests.Timeout:
        return Check(
            name,
            Status.FAIL,
            f"not reachable: no answer from {url} within {timeout:.0f} s",
            start + "forwards to it",
        )
    except requests.RequestException as exc:
        return Check(
            name,
            Status.FAIL,
            f"not reachable: {url} ({type(exc).__name__})",
            start + "(your tunnel or proxy) forwards to it",
        )
    with response:
        status = response.status_code
        if status == 403:
            return Check(
                name,
                Status.FAIL,
                "signature mismatch: TEXTWIRE_PUBLIC_URL does not match the URL "
                "Twilio calls",
                "set TEXTWIRE_PUBLIC_URL, for the server too, to the exact public "
                "base URL (scheme and host of the tunnel), with the same "
                "TWILIO_AUTH_TOKEN",
            )
        if status in (301, 302, 303, 307, 308):
            return Check(
                name,
                Status.FAIL,
                f"{url} redirects to {response.headers.get('Location', '?')}",
                "use the URL it redirects to as TEXTWIRE_PUBLIC_URL",
            )
        if status == 404:
            return Check(
                name,
                Status.FAIL,
                f"{url} answered 404: the URL reaches something else than "
                "this textwire server (or the tunnel is down)",
                start + "forwards to it",
            )
        try:
            payload = response.json() if status == 200 else None
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or payload.get("nonce") != nonce:
            return Check(
                name,
                Status.FAIL,
                f"{url} answered HTTP {status}, not as textwire's self-test",
                start + "forwards to it",
            )
        elapsed = response.elapsed.total_seconds() * 1000
    if not payload.get("signatures_checked", True):
        return Check(
            name,
            Status.WARN,
            f"reached the server in {elapsed:.0f} ms, but it does not check signatures",
            "unset TEXTWIRE_VALIDATE_SIGNATURES on the server",
        )
    return Check(
        name,
        Status.OK,
        f"a signed request reached bot {payload.get('bot', '?')} in {elapsed:.0f} ms",
    )


def check_database(database_url: str) -> Check:
    """The database answers and is at the code's migration head."""
    from sqlalchemy.engine import make_url

    from textwire.storage.sql import SqlStore

    name = "database"
    upgrade = "run `textwire db upgrade` (SQLite: `textwire run` also migrates it)"
    try:
        url = make_url(database_url)
    except Exception:
        return Check(
            name,
            Status.FAIL,
            "TEXTWIRE_DATABASE_URL is not a database URL",
            "e.g. sqlite:///textwire.db or postgresql://user@host/db",
        )
    in_file = url.database not in (None, "", ":memory:")
    if url.get_backend_name() == "sqlite" and in_file:
        path = Path(str(url.database))
        if not path.is_file():
            return Check(name, Status.FAIL, f"{path} does not exist yet", upgrade)
    store: SqlStore | None = None
    try:
        store = SqlStore(database_url)
        store.check()
        revision = store.current_revision()
        shown = repr(store)
    except StorageError as exc:
        migrated = "revision" in str(exc)
        return Check(
            name,
            Status.FAIL,
            str(exc) if migrated else f"unreachable: {exc}",
            upgrade
            if migrated
            else "check TEXTWIRE_DATABASE_URL and that the database server runs",
        )
    except Exception as exc:
        return Check(
            name,
            Status.FAIL,
            f"unreachable: {type(exc).__name__}",
            "check TEXTWIRE_DATABASE_URL and that the database server runs",
        )
    finally:
        if store is not None:
            store.dispose()
    return Check(name, Status.OK, f"{shown} at revision {revision}")


def check_clock(
    client: Any,
    *,
    now: Callable[[], datetime] = _utcnow,
    max_skew: timedelta = MAX_CLOCK_SKEW,
) -> Check:
    """This machine's clock agrees with the ``Date`` of Twilio's answer."""
    name = "clock"
    before = now()
    try:
        response = _probe(client)
    except Exception:
        return Check(name, Status.SKIP, "needs an answer from Twilio")
    after = now()
    raw = response.headers.get("Date") if response.headers else None
    try:
        theirs = parsedate_to_datetime(str(raw)) if raw else None
    except (TypeError, ValueError):
        theirs = None
    if theirs is None or theirs.tzinfo is None:
        return Check(name, Status.WARN, "Twilio's answer had no usable Date header")
    ours = before + (after - before) / 2
    skew = ours - theirs
    seconds = abs(skew.total_seconds())
    if abs(skew) > max_skew:
        way = "ahead of" if skew > timedelta(0) else "behind"
        return Check(
            name,
            Status.FAIL,
            f"this machine's clock is {_duration(seconds)} {way} Twilio's",
            "signatures and DateSent filters depend on it: synchronize the clock "
            "(e.g. `timedatectl set-ntp true`)",
        )
    return Check(name, Status.OK, f"within {seconds:.0f} s of Twilio's")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def resolve_public_url(
    settings: Settings, state_path: str | Path = DEFAULT_STATE_PATH
) -> tuple[str | None, str]:
    """The public URL to check, and where it came from: TEXTWIRE_PUBLIC_URL,
    else the tunnel of a ``textwire dev`` running in this directory."""
    if settings.public_url:
        return settings.public_url, "TEXTWIRE_PUBLIC_URL"
    try:
        saved = DevStateFile(state_path).load()
    except DevSetupError:
        return None, ""
    if saved is None or not process_alive(saved.pid):
        return None, ""
    return saved.webhook_url.removesuffix(WEBHOOK_PATH), "the running textwire dev"


def run_checks(
    settings: Settings,
    *,
    client: Any | None = None,
    public_url: str | None = None,
    now: Callable[[], datetime] | None = None,
    post: Post | None = None,
) -> list[Check]:
    """Every check, in order, for these settings.

    Args:
        client: a twilio Client (built from the settings when omitted and
            the credentials are set).
        public_url: the URL to check (default ``settings.public_url``).
        now: this machine's clock (UTC).
        post: what sends the self-test request (``requests.post``).
    """
    close: Callable[[], None] | None = None
    if client is None and settings.has_twilio_credentials:
        client, close = connect_twilio(settings)
    public_url = public_url or settings.public_url
    region = settings.default_region
    phone = settings.twilio_phone_number
    try:
        checks = [check_credentials(client)]
        if checks[0].passed:
            checks.append(check_number(client, phone, region=region))
            checks.append(check_webhook(client, phone, public_url, region=region))
        else:
            needs = "needs valid Twilio credentials"
            checks.append(Check("sender number", Status.SKIP, needs))
            checks.append(Check("number's webhook", Status.SKIP, needs))
        checks.append(
            check_public_url(
                public_url, settings.twilio_auth_token, post=post or requests.post
            )
        )
        checks.append(check_database(settings.database_url))
        if client is not None:
            checks.append(check_clock(client, now=now or _utcnow))
        else:
            checks.append(Check("clock", Status.SKIP, "needs Twilio credentials"))
        return checks
    finally:
        if close is not None:
            close()


def all_passed(checks: list[Check]) -> bool:
    """True when no check failed or was skipped."""
    return all(check.passed for check in checks)


def render(checks: list[Check], console: Console) -> None:
    """The table: check, result, fix; then one line with the verdict."""
    table = Table(title="textwire doctor", title_justify="left", show_lines=False)
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("result", overflow="fold", ratio=1)
    table.add_column("fix", overflow="fold", ratio=1)
    for check in checks:
        table.add_row(check.name, _MARKS[check.status], check.result, check.fix)
    console.print(table)
    failed = [c for c in checks if not c.passed]
    if not failed:
        console.print("[green]all checks passed[/]")
    else:
        console.print(
            f"[bold red]{len(failed)} of {len(checks)} checks did not pass[/]"
        )

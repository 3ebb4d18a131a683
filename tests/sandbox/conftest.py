"""Fixtures for the emulator's API and carrier tests.

The emulator's blueprint is served by a real local HTTP server (werkzeug, one
thread per request) and driven by the unmodified ``twilio`` client, with
``client.api.base_url`` pointed at it. Every response the client receives is
recorded, so conformance tests can check the JSON against Twilio's OpenAPI
definition.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from werkzeug.serving import BaseWSGIServer, make_server

from textwire.sandbox.api import Faults, create_api_blueprint
from textwire.sandbox.carrier import Carrier
from textwire.sandbox.state import EmNumber, EmulatorState, VirtualPhone

ACCOUNT_SID = "AC" + "5a" * 16
AUTH_TOKEN = "sandbox-test-token-0123456789abcdef"
NUMBER = "+14155550100"
OTHER_NUMBER = "+14155550111"
SERVICE_SID = "MG" + "0c" * 16
IN_CI = os.environ.get("CI", "").lower() == "true"

ANA = VirtualPhone("+14155550199", "Ana", "+1 (415) 555-0199", "US")
BEN = VirtualPhone("+14155550142", "Ben · national", "(415) 555-0142", "US")
CHLOE = VirtualPhone(
    "+447400123456", "Chloe · no MMS", "+44 7400 123456", "GB", mms=False
)
FAY = VirtualPhone(
    "+14155550123", "Fay · phone off", "+1 (415) 555-0123", "US", fate="undelivered"
)
GIL = VirtualPhone(
    "+14155550124", "Gil · no such phone", "+1 (415) 555-0124", "US", fate="failed"
)
PHONES = (ANA, BEN, CHLOE, FAY, GIL)

SPEC_PATH = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "twilio"
    / "twilio_api_v2010.json"
)


class RecordingHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """The twilio client's own HTTP client, remembering every answer."""

    def __init__(self, timeout: float | None = None) -> None:
        super().__init__(timeout=timeout)
        self.exchanges: list[tuple[str, str, int, str]] = []

    def request(
        self,
        method: str,
        url: str,
        params: Any = None,
        data: Any = None,
        headers: Any = None,
        auth: Any = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Any:
        response = super().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )
        self.exchanges.append((method, url, response.status_code, response.text))
        return response

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


@dataclass
class Emulator:
    """A running emulator: its state, carrier, fault knobs and URL."""

    state: EmulatorState
    carrier: Carrier
    faults: Faults
    url: str
    number: EmNumber
    https: list[RecordingHttpClient] = field(default_factory=list)

    def client(
        self,
        *,
        username: str = ACCOUNT_SID,
        password: str = AUTH_TOKEN,
        timeout: float | None = 10.0,
    ) -> Client:
        """An unmodified twilio Client pointed at the emulator."""
        http = RecordingHttpClient(timeout=timeout)
        self.https.append(http)
        # A non-empty environment without TWILIO_* keys: the process's own
        # TWILIO_REGION / TWILIO_EDGE would rewrite the host.
        client = Client(username, password, http_client=http, environment={"X": "1"})
        client.api.base_url = self.url
        return client

    @property
    def exchanges(self) -> list[tuple[str, str, int, str]]:
        return [e for http in self.https for e in http.exchanges]


EmulatorFactory = Callable[..., Emulator]


@pytest.fixture
def make_emulator() -> Iterator[EmulatorFactory]:
    """Start emulators (closed at teardown): ``make_emulator(faults=..., ...)``."""
    running: list[tuple[Emulator, BaseWSGIServer, threading.Thread]] = []

    def make(
        *,
        faults: Faults | None = None,
        phones: tuple[VirtualPhone, ...] = PHONES,
        step_delay: float = 0.0,
        sms_url: str | None = None,
    ) -> Emulator:
        state = EmulatorState(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
        number = state.add_number(NUMBER, "(415) 555-0100")
        number.sms_url = sms_url
        other = state.add_number(OTHER_NUMBER, "second number")
        state.add_service("test service", [number, other], sid=SERVICE_SID)
        for phone in phones:
            state.add_phone(phone)
        app = Flask("emulator-under-test")
        server = make_server("127.0.0.1", 0, app, threaded=True)
        url = f"http://127.0.0.1:{server.port}"
        carrier = Carrier(state, base_url=url, step_delay=step_delay, http_timeout=3.0)
        knobs = faults if faults is not None else Faults()
        app.register_blueprint(create_api_blueprint(state, carrier, knobs))
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        thread.start()
        emulator = Emulator(state, carrier, knobs, url, number)
        running.append((emulator, server, thread))
        return emulator

    yield make
    for emulator, server, thread in running:
        emulator.faults.release()
        emulator.carrier.stop()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        for http in emulator.https:
            http.close()


@pytest.fixture
def emulator(make_emulator: EmulatorFactory) -> Emulator:
    return make_emulator()


@pytest.fixture
def twilio_client(emulator: Emulator) -> Client:
    return emulator.client()


# -- Twilio's OpenAPI definition -----------------------------------------------


class TwilioSpec:
    """Schemas of Twilio's OpenAPI definition, with ``$ref`` resolution."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.components = spec["components"]

    def component(self, name: str) -> dict[str, Any]:
        return dict(self.components["schemas"][name])

    def response(self, path: str, method: str, status: str) -> dict[str, Any]:
        operation = self.spec["paths"][f"/2010-04-01/Accounts/{{AccountSid}}{path}"]
        content = operation[method]["responses"][status]["content"]
        return dict(content["application/json"]["schema"])

    def validate(self, instance: Any, schema: dict[str, Any]) -> None:
        """Validate as OpenAPI 3.0 (``nullable``), resolving ``#/components``."""
        from openapi_schema_validator import OAS30Validator

        OAS30Validator({**schema, "components": self.components}).validate(instance)

    def properties(self, schema: dict[str, Any]) -> set[str]:
        if "$ref" in schema:
            schema = self.component(schema["$ref"].rsplit("/", 1)[1])
        return set(schema["properties"])


@pytest.fixture(scope="session")
def twilio_spec() -> TwilioSpec:
    if not SPEC_PATH.is_file():
        message = f"Twilio's OpenAPI definition is not at {SPEC_PATH}"
        if IN_CI:
            pytest.fail(message + " (required when CI=true)")
        pytest.skip(message)
    return TwilioSpec(json.loads(SPEC_PATH.read_text(encoding="utf-8")))


_ROUTES: list[tuple[str, str, str]] = [
    # (method, path regex after /Accounts/AC…, spec path)
    ("POST", r"/Messages\.json", "/Messages.json"),
    ("GET", r"/Messages\.json", "/Messages.json"),
    ("GET", r"/Messages/[A-Z]{2}\w{32}\.json", "/Messages/{Sid}.json"),
    ("POST", r"/Messages/[A-Z]{2}\w{32}\.json", "/Messages/{Sid}.json"),
    ("GET", r"/Messages/\w{34}/Media\.json", "/Messages/{MessageSid}/Media.json"),
    (
        "GET",
        r"/Messages/\w{34}/Media/ME\w{32}\.json",
        "/Messages/{MessageSid}/Media/{Sid}.json",
    ),
    ("GET", r"/IncomingPhoneNumbers\.json", "/IncomingPhoneNumbers.json"),
    (
        "GET",
        r"/IncomingPhoneNumbers/PN\w{32}\.json",
        "/IncomingPhoneNumbers/{Sid}.json",
    ),
    (
        "POST",
        r"/IncomingPhoneNumbers/PN\w{32}\.json",
        "/IncomingPhoneNumbers/{Sid}.json",
    ),
]


def spec_operation(method: str, url: str) -> str:
    """The OpenAPI path of a request URL (fails on anything else)."""
    path = url.split("?", 1)[0]
    tail = path.split(f"/Accounts/{ACCOUNT_SID}", 1)[1]
    for verb, pattern, spec_path in _ROUTES:
        if verb == method and re.fullmatch(pattern, tail):
            return spec_path
    raise AssertionError(f"no OpenAPI operation for {method} {url}")

"""Fixtures for the console's tests: an app with the console on, and an
operator logged in through the real login form."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from textwire import Bot
from textwire.config import Settings
from textwire.storage.sql import SqlStore
from textwire.web import create_app

from ..conftest import base_settings

PASSWORD = "correct horse battery staple"


@pytest.fixture
def console_settings(database_url: str, tmp_path: Path) -> Settings:
    return base_settings(database_url).replace(
        console_password=PASSWORD, media_store=str(tmp_path / "media")
    )


@pytest.fixture
def console_app(console_settings: Settings, bot: Bot, store: SqlStore) -> Flask:
    return create_app(console_settings, bot=bot, store=store)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


class Operator:
    """A browser-like client of the console: logs in through the form."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.csrf = ""

    def login(self, name: str = "Sam", password: str = PASSWORD) -> Any:
        page = self.client.get("/console/login")
        response = self.client.post(
            "/console/login",
            data={"csrf_token": csrf_of(page.text), "name": name, "password": password},
        )
        if response.status_code == 303:
            self.csrf = csrf_of(self.client.get("/console/").text)
        return response

    def post(self, path: str, data: dict[str, str] | None = None, **kw: Any) -> Any:
        return self.client.post(
            path, data={"csrf_token": self.csrf, **(data or {})}, **kw
        )

    def post_json(self, path: str, data: dict[str, str] | None = None) -> Any:
        return self.post(path, data, headers={"Accept": "application/json"})


@pytest.fixture
def console(console_app: Flask) -> Iterator[Operator]:
    operator = Operator(console_app.test_client())
    assert operator.login().status_code == 303
    yield operator

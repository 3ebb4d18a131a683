"""No phone number or message body in the logs, also when the database fails.

SQLAlchemy's error messages list every bound value (``[parameters: {...
'from_number': '+13052000153', ... 'body': ...}]``) unless the engine hides
them; those messages end up in tracebacks and in ``raise ... from`` chains.
"""

from __future__ import annotations

import logging
import traceback

import pytest

from textwire.config import Settings
from textwire.errors import StorageError
from textwire.examples.helpdesk import create_bot
from textwire.service import queue_message
from textwire.storage.sql import SqlStore
from textwire.web import create_app

from .conftest import PUBLIC_URL, make_form, sign

NUMBER = "+13052000153"
BODY = "my card number is 4111 1111"


def test_a_failed_insert_logs_neither_the_number_nor_the_body(
    database_url: str, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a database whose tables are missing (every insert fails)
    store = SqlStore(database_url)
    app = create_app(settings, bot=create_bot(), store=store)
    form = make_form(BODY, From=NUMBER)
    # When a webhook arrives and the insert fails
    with caplog.at_level(logging.DEBUG):
        response = app.test_client().post(
            "/twilio/sms",
            data=form,
            headers={"X-Twilio-Signature": sign(PUBLIC_URL + "/twilio/sms", form)},
        )
    store.dispose()
    # Then it is refused, the log says why, and holds neither the number
    # nor the body
    assert response.status_code == 503
    assert "no such table" in caplog.text or "does not exist" in caplog.text
    assert "3052000153" not in caplog.text
    assert BODY not in caplog.text


def test_the_storage_error_chain_holds_no_bound_value(
    database_url: str, settings: Settings
) -> None:
    store = SqlStore(database_url)  # not migrated
    with pytest.raises(StorageError) as caught:
        queue_message(store, to=NUMBER, body=BODY, settings=settings)
    store.dispose()
    # What logger.exception() prints (the worker's loops do)
    text = "".join(traceback.format_exception(caught.value))
    assert "3052000153" not in text
    assert BODY not in text
    assert "parameters hidden" in text

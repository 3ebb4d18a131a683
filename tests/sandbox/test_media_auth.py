"""The emulator's inbound media behind HTTP Basic auth, as Twilio's are:
"Twilio enforces HTTP Basic Authentication for all media URLs". Without the
account's credentials a media GET is 401 (20003, with WWW-Authenticate);
with them, the bytes. A bot that fetches media without credentials must
fail offline exactly as it would live.
"""

from __future__ import annotations

import pytest
import requests

from textwire.errors import MediaFetchError
from textwire.mediastore import TwilioMediaSource
from textwire.sandbox.state import EmMessage

from .browser_fixtures import tiny_png
from .conftest import ACCOUNT_SID, ANA, AUTH_TOKEN, NUMBER, Emulator

PNG = tiny_png(3, 3)


def _picture(emulator: Emulator) -> EmMessage:
    message = emulator.carrier.send_from_phone(
        ANA.number, NUMBER, "my photo", [(PNG, "image/png")]
    )
    assert message.media and message.media[0].url.startswith(emulator.url)
    return message


def test_media_bytes_without_credentials_are_401(emulator: Emulator) -> None:
    url = _picture(emulator).media[0].url
    response = requests.get(url, timeout=5)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert response.json()["code"] == 20003
    assert PNG not in response.content


def test_media_bytes_with_wrong_credentials_are_401(emulator: Emulator) -> None:
    url = _picture(emulator).media[0].url
    response = requests.get(url, auth=(ACCOUNT_SID, "not-the-token"), timeout=5)
    assert response.status_code == 401


def test_media_bytes_with_the_credentials(emulator: Emulator) -> None:
    url = _picture(emulator).media[0].url
    response = requests.get(url, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
    assert response.status_code == 200
    assert response.content == PNG
    assert response.headers["Content-Type"].startswith("image/png")


def test_fetch_media_gets_the_bytes_from_the_emulator(emulator: Emulator) -> None:
    message = _picture(emulator)
    media = TwilioMediaSource(
        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, api_url=emulator.url
    )
    fetched = media.get(message.sid, 0, message.media[0].url)
    assert (fetched.data, fetched.content_type) == (PNG, "image/png")


def test_fetch_media_without_credentials_fails_offline_as_live(
    emulator: Emulator,
) -> None:
    message = _picture(emulator)
    media = TwilioMediaSource(account_sid=None, auth_token=None, api_url=emulator.url)
    with pytest.raises(MediaFetchError) as caught:
        media.get(message.sid, 0, message.media[0].url)
    assert caught.value.status == 401


def test_deleting_media_after_the_copy(emulator: Emulator) -> None:
    # DELETE …/Messages/{sid}/Media/{ME}.json → 204; the bytes are gone (404).
    message = _picture(emulator)
    url = message.media[0].url
    media = TwilioMediaSource(
        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, api_url=emulator.url
    )
    response = requests.delete(url + ".json", auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
    assert response.status_code == 204
    assert media.delete(url)  # a second delete (404) counts as gone too
    gone = requests.get(url, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
    assert gone.status_code == 404

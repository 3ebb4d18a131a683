"""GET /media/<path> serves regular files inside the bot's media folder only.

A symbolic link placed in the folder was followed: ``/media/passwd`` served
``/etc/passwd`` (issue 12). Paths are resolved and must stay inside.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from textwire import Bot
from textwire.config import Settings
from textwire.storage.sql import SqlStore
from textwire.web import create_app

SECRET = "root:x:0:0:not for twilio\n"


@pytest.fixture
def media(tmp_path: Path) -> Path:
    folder = tmp_path / "media"
    (folder / "sub").mkdir(parents=True)
    (folder / "logo.png").write_bytes(b"\x89PNG logo")
    (folder / "sub" / "deep.png").write_bytes(b"\x89PNG deep")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text(SECRET)
    (folder / "passwd").symlink_to(outside / "passwd")
    (folder / "etc").symlink_to(outside, target_is_directory=True)
    (folder / "alias.png").symlink_to(folder / "logo.png")  # stays inside
    (folder / "loop").symlink_to(folder / "loop")
    (folder / "dangling.png").symlink_to(tmp_path / "nothing.png")
    return folder


@pytest.fixture
def client(settings: Settings, store: SqlStore, media: Path) -> Iterator[FlaskClient]:
    app = create_app(settings, bot=Bot(media_folder=media), store=store)
    yield app.test_client()


@pytest.mark.parametrize(
    "path",
    [
        "/media/passwd",
        "/media/etc/passwd",
        "/media/loop",
        "/media/dangling.png",
        "/media/sub",
        "/media/../outside/passwd",
        "/media/%2e%2e/outside/passwd",
        "/media//etc/passwd",
    ],
)
def test_nothing_outside_the_folder_or_not_a_file_is_served(
    client: FlaskClient, path: str
) -> None:
    # (werkzeug answers "//" with a redirect to the merged path: follow it)
    with client.get(path, follow_redirects=True) as response:
        assert response.status_code == 404, path
        assert SECRET not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/media/logo.png", b"\x89PNG logo"),
        ("/media/sub/deep.png", b"\x89PNG deep"),
        ("/media/alias.png", b"\x89PNG logo"),
    ],
)
def test_files_inside_the_folder_are_served(
    client: FlaskClient, path: str, body: bytes
) -> None:
    with client.get(path) as response:
        assert response.status_code == 200
        assert response.data == body
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_media_folder_that_is_itself_a_link_still_works(
    settings: Settings, store: SqlStore, media: Path, tmp_path: Path
) -> None:
    link = tmp_path / "media-link"
    link.symlink_to(media, target_is_directory=True)
    app = create_app(settings, bot=Bot(media_folder=link), store=store)
    with app.test_client().get("/media/logo.png") as response:
        assert response.status_code == 200

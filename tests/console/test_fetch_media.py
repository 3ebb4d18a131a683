"""ctx.fetch_media and the media store: Basic auth as Twilio requires it (a
local server here refuses requests without it, 401), the size limit, the
timeout, copies in a folder or any fsspec URL, deletion after the copy, and
the account's credentials never sent to another host."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from textwire import Bot, Context, Inbound
from textwire import filters as F
from textwire.errors import MediaFetchError, MediaTooLarge
from textwire.mediastore import MediaStore, TwilioMediaSource
from textwire.testing import BotTester, make_inbound

from ..conftest import ACCOUNT_SID, AUTH_TOKEN
from ..sandbox.browser_fixtures import tiny_png

PNG = tiny_png()
MEDIA_PATH = (
    f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM{'1' * 32}/Media/ME{'2' * 32}"
)


class FakeTwilioMedia:
    """Twilio's media endpoint as documented: Basic auth or 401."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.requests: list[tuple[str, str | None]] = []
        self.body = PNG
        self.content_type = "image/png"
        self.gone = False
        self.stall = threading.Event()
        self.stalling = False
        self.chunked = False

    @property
    def api_url(self) -> str:
        return self.server.url_for("").rstrip("/")

    @property
    def url(self) -> str:
        return self.api_url + MEDIA_PATH

    def handle(self, request: Request) -> Response:
        auth = request.authorization
        self.requests.append((request.method, auth.username if auth else None))
        if (
            auth is None
            or auth.type != "basic"
            or (auth.username, auth.password) != (ACCOUNT_SID, AUTH_TOKEN)
        ):
            return Response(
                '{"code": 20003, "message": "Authenticate", "status": 401}',
                401,
                {"WWW-Authenticate": 'Basic realm="Twilio API"'},
                content_type="application/json",
            )
        if request.method == "DELETE":
            self.gone = True
            return Response(status=204)
        if self.gone:
            return Response('{"code": 20404, "status": 404}', 404)
        if self.stalling:
            self.stall.wait(10)
        if self.chunked:

            def chunks() -> Iterator[bytes]:
                yield from (
                    self.body[i : i + 1000] for i in range(0, len(self.body), 1000)
                )

            return Response(chunks(), 200, content_type=self.content_type)
        return Response(self.body, 200, content_type=self.content_type)


@pytest.fixture
def twilio_media(httpserver: HTTPServer) -> Iterator[FakeTwilioMedia]:
    fake = FakeTwilioMedia(httpserver)
    httpserver.expect_request(MEDIA_PATH).respond_with_handler(fake.handle)
    httpserver.expect_request(
        MEDIA_PATH + ".json", method="DELETE"
    ).respond_with_handler(fake.handle)
    yield fake
    fake.stall.set()


def source(
    fake: FakeTwilioMedia, tmp_path: Path, **changes: object
) -> TwilioMediaSource:
    values: dict[str, object] = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "api_url": fake.api_url,
        "store": MediaStore(str(tmp_path / "media")),
        "timeout": 5.0,
    }
    values.update(changes)
    return TwilioMediaSource(**values)  # type: ignore[arg-type]


def inbound(url: str) -> Inbound:
    return make_inbound("", media=[url], MessageSid="MM" + "1" * 32)


def test_fetched_with_basic_auth_and_kept_in_the_folder(
    twilio_media: FakeTwilioMedia, tmp_path: Path
) -> None:
    fetched = source(twilio_media, tmp_path).fetch(inbound(twilio_media.url), 0)
    assert fetched.data == PNG
    assert fetched.content_type == "image/png"
    assert twilio_media.requests == [("GET", ACCOUNT_SID)]
    kept = tmp_path / "media" / ("MM" + "1" * 32) / "0"
    assert kept.read_bytes() == PNG
    assert fetched.stored == str(kept)
    assert '"image/png"' in kept.with_name("0.json").read_text()


def test_without_the_credentials_twilio_answers_401(
    twilio_media: FakeTwilioMedia, tmp_path: Path
) -> None:
    for sid, token in [(None, None), (ACCOUNT_SID, "wrong-token")]:
        with pytest.raises(MediaFetchError) as caught:
            source(twilio_media, tmp_path, account_sid=sid, auth_token=token).fetch(
                inbound(twilio_media.url), 0
            )
        assert caught.value.status == 401
    assert "TWILIO_AUTH_TOKEN" in str(caught.value)  # the hint names the fix
    assert AUTH_TOKEN not in str(caught.value) and "wrong-token" not in str(
        caught.value
    )
    assert not (tmp_path / "media").exists()


def test_a_copy_is_served_after_twilio_deleted_the_file(
    twilio_media: FakeTwilioMedia, tmp_path: Path
) -> None:
    media = source(twilio_media, tmp_path, delete_after_copy=True)
    first = media.fetch(inbound(twilio_media.url), 0)
    # Deleted from Twilio right after the copy (for privacy), with the credentials.
    assert twilio_media.requests == [("GET", ACCOUNT_SID), ("DELETE", ACCOUNT_SID)]
    assert twilio_media.gone
    again = source(twilio_media, tmp_path).fetch(inbound(twilio_media.url), 0)
    assert again.data == first.data == PNG
    assert len(twilio_media.requests) == 2  # served from the copy, no request
    # Without the copy, Twilio's 404 is a clear error.
    with pytest.raises(MediaFetchError) as caught:
        source(twilio_media, tmp_path, store=None).fetch(inbound(twilio_media.url), 0)
    assert caught.value.status == 404


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "streamed"])
def test_a_file_over_the_size_limit_is_refused(
    twilio_media: FakeTwilioMedia, tmp_path: Path, chunked: bool
) -> None:
    twilio_media.body = b"x" * 50_000
    twilio_media.chunked = chunked
    with pytest.raises(MediaTooLarge, match="TEXTWIRE_MEDIA_MAX_BYTES"):
        source(twilio_media, tmp_path, max_bytes=20_000).fetch(
            inbound(twilio_media.url), 0
        )
    assert not (tmp_path / "media").exists()
    # At the limit it is fine.
    fetched = source(twilio_media, tmp_path, max_bytes=50_000).fetch(
        inbound(twilio_media.url), 0
    )
    assert len(fetched.data) == 50_000


def test_a_stalled_fetch_times_out(
    twilio_media: FakeTwilioMedia, tmp_path: Path
) -> None:
    twilio_media.stalling = True
    with pytest.raises(MediaFetchError, match="TEXTWIRE_MEDIA_TIMEOUT"):
        source(twilio_media, tmp_path, timeout=0.5).fetch(inbound(twilio_media.url), 0)


def test_credentials_stay_on_twilios_host_across_a_redirect(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    # Twilio answers a media GET with a redirect to its CDN; the CDN must
    # never see the account's credentials.
    seen: list[str | None] = []
    cdn = httpserver.url_for("/cdn/photo.png").replace("localhost", "127.0.0.1")

    def api(request: Request) -> Response:
        seen.append(request.headers.get("Authorization"))
        return Response(status=307, headers={"Location": cdn})

    def cdn_handler(request: Request) -> Response:
        seen.append(request.headers.get("Authorization"))
        return Response(PNG, 200, content_type="image/png")

    httpserver.expect_request(MEDIA_PATH).respond_with_handler(api)
    httpserver.expect_request("/cdn/photo.png").respond_with_handler(cdn_handler)
    api_url = httpserver.url_for("").rstrip("/")
    assert "localhost" in api_url
    media = TwilioMediaSource(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        api_url=api_url,
        allow_private=True,
    )
    assert media.fetch(inbound(api_url + MEDIA_PATH), 0).data == PNG
    assert seen[0] is not None and seen[0].startswith("Basic ")
    assert seen[1] is None


def test_no_credentials_for_a_url_off_twilios_host(
    twilio_media: FakeTwilioMedia, tmp_path: Path
) -> None:
    # The same server under another name is "another host": no credentials.
    other = twilio_media.url.replace("localhost", "127.0.0.1")
    with pytest.raises(MediaFetchError) as caught:
        source(twilio_media, tmp_path, allow_private=True).fetch(inbound(other), 0)
    assert caught.value.status == 401
    assert twilio_media.requests == [("GET", None)]
    # And a private host is refused outright unless allowed (no SSRF).
    with pytest.raises(MediaFetchError, match="private"):
        source(twilio_media, tmp_path).fetch(inbound(other), 0)


def test_any_fsspec_url_keeps_the_copies() -> None:
    store = MediaStore("memory://textwire-test-media")
    from textwire.attachments import FetchedMedia

    sid = "MM" + "7" * 32
    where = store.save(sid, 1, FetchedMedia(b"abc", "image/gif"))
    assert where.startswith("memory://")
    kept = store.load(sid, 1)
    assert kept is not None and (kept.data, kept.content_type) == (b"abc", "image/gif")
    assert store.load(sid, 2) is None
    with pytest.raises(ValueError):
        store.load("../etc", 0)


def _media_bot() -> Bot:
    bot = Bot(name="media")

    @bot.message(F.keyword("sync"))
    def sync(msg: Inbound, ctx: Context) -> str:
        picture = ctx.fetch_media(0)
        return f"{picture.content_type} {len(picture.data)}"

    @bot.message(F.keyword("async"))
    async def async_(msg: Inbound, ctx: Context) -> str:
        pending = ctx.fetch_media(0)
        await asyncio.sleep(0)  # the loop runs on while the fetch goes on
        picture = await pending
        return (
            f"{picture.content_type} {len(picture.data)} {picture.stored is not None}"
        )

    @bot.message(F.keyword("missing"))
    def missing(msg: Inbound, ctx: Context) -> str:
        ctx.fetch_media(3)
        return "unreachable"

    return bot


def test_ctx_fetch_media_in_plain_and_async_handlers(
    twilio_media: FakeTwilioMedia, tmp_path: Path
) -> None:
    with BotTester(_media_bot(), media=source(twilio_media, tmp_path)) as tester:
        assert tester.texts("sync", media=[twilio_media.url]) == [
            f"image/png {len(PNG)}"
        ]
        assert tester.texts("async", media=[twilio_media.url]) == [
            f"image/png {len(PNG)} True"
        ]
        # No such file: the handler's IndexError is answered with the apology.
        (apology,) = tester.texts("missing", media=[twilio_media.url])
        assert tester.last is not None and tester.last.failed
        assert "Sorry" in apology

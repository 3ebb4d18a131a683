"""MMS reach, the media-URL checks (no private hosts), and the HEAD probe."""

from __future__ import annotations

import socket

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from textwire import Bot, Context, Inbound, Reply
from textwire.config import Settings
from textwire.errors import InvalidMessage
from textwire.media import apply_mms_policy, check_media_host, mms_capable, probe_media
from textwire.service import queue_message
from textwire.storage.sql import SqlStore
from textwire.web import create_app
from textwire.worker import SendWorker

from .conftest import PUBLIC_URL, PostFn, TwilioAPI, handle_inbox, make_form, sign

UK = "+447911123456"
US = "+14155550199"
PICS = ("https://cdn.example.com/a.png", "https://cdn.example.com/b.png")


def drain(worker: SendWorker) -> None:
    while worker.run_once():
        pass


@pytest.mark.parametrize(
    ("number", "capable"),
    [
        (US, True),
        ("+16135550123", True),  # Canada
        (UK, False),
        ("+4915123456789", False),
        ("+5511912345678", False),
        ("whatsapp:+447911123456", True),
    ],
)
def test_mms_capable(number: str, capable: bool) -> None:
    assert mms_capable(number) is capable


def test_policy_link_drop_send_for_a_uk_recipient() -> None:
    reply = Reply("Your tickets", media=PICS)
    (linked,) = apply_mms_policy(UK, reply, "link")
    assert linked.media == ()
    assert linked.body == "Your tickets\n" + "\n".join(PICS)
    (dropped,) = apply_mms_policy(UK, reply, "drop")
    assert dropped == Reply("Your tickets")
    assert apply_mms_policy(UK, reply, "send") == [reply]
    assert apply_mms_policy(US, reply, "link") == [reply]
    assert apply_mms_policy(UK, Reply(media=PICS), "drop") == []
    (only_links,) = apply_mms_policy(UK, Reply(media=PICS), "link")
    assert only_links.body == "\n".join(PICS)


def test_policy_link_splits_in_order_when_links_do_not_fit() -> None:
    reply = Reply("x" * 1590, media=PICS)
    first, second = apply_mms_policy(UK, reply, "link")
    assert first.body == "x" * 1590 and first.media == ()
    assert second.body == "\n".join(PICS)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.png",
        "http://10.0.0.5/a.png",
        "https://192.168.1.20:8443/a.png",
        "http://172.16.3.4/a.png",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/a.png",
        "http://[fd00::1]/a.png",
        "http://localhost:5000/a.png",
        "http://printer.local/a.png",
        "http://db.internal/a.png",
        "http://0.0.0.0/a.png",
    ],
)
def test_private_hosts_are_refused(url: str) -> None:
    with pytest.raises(InvalidMessage, match="public URL"):
        check_media_host(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example.com/a.png",
        "http://93.184.216.34/a.png",
        "https://[2606:4700::1]/x",
    ],
)
def test_public_hosts_pass(url: str) -> None:
    check_media_host(url)


def test_reply_limits_for_media_urls() -> None:
    with pytest.raises(InvalidMessage, match="10"):
        Reply("x", media=[f"https://cdn.example.com/{i}.png" for i in range(11)])
    for bad in ("ftp://cdn.example.com/a.png", "/media/a.png", "javascript:alert(1)"):
        with pytest.raises(InvalidMessage):
            Reply("x", media=[bad])


def test_uk_contact_gets_links_and_us_contact_gets_mms(
    post_webhook: PostFn, worker: SendWorker, twilio_api: TwilioAPI
) -> None:
    post_webhook(make_form("help", From=UK, FromCountry="GB"))
    post_webhook(make_form("help", From=US))
    drain(worker)
    by_to = {c["form"]["To"][0]: c["form"] for c in twilio_api.creates}
    assert "MediaUrl" not in by_to[UK]
    assert f"{PUBLIC_URL}/media/logo.png" in by_to[UK]["Body"][0]
    assert by_to[US]["MediaUrl"] == [
        f"{PUBLIC_URL}/media/logo.png",
        f"{PUBLIC_URL}/media/helpdesk.png",
    ]


def test_a_reply_with_private_media_is_refused_like_a_failing_handler(
    settings: Settings, store: SqlStore, worker: SendWorker, twilio_api: TwilioAPI
) -> None:
    bot = Bot(apology="Sorry!")

    @bot.message()
    def leaky(msg: Inbound, ctx: Context) -> Reply:
        return Reply("see", media=["http://10.1.2.3/secret.png"])

    app = create_app(settings, bot=bot, store=store)
    form = make_form("x")
    app.test_client().post(
        "/twilio/sms",
        data=form,
        headers={"X-Twilio-Signature": sign(PUBLIC_URL + "/twilio/sms", form)},
    )
    handle_inbox(store, bot, settings)
    drain(worker)
    (create,) = twilio_api.creates
    assert create["form"]["Body"] == ["Sorry!"]
    assert "MediaUrl" not in create["form"]


def test_the_bots_own_media_on_a_local_public_url_is_allowed(
    settings: Settings, store: SqlStore
) -> None:
    # The sandbox and dry runs serve the bot on 127.0.0.1: its own media pass.
    local = settings.replace(public_url="http://127.0.0.1:8000")
    bot = _helpdesk()
    app = create_app(local, bot=bot, store=store)
    form = make_form("help")
    app.test_client().post(
        "/twilio/sms",
        data=form,
        headers={"X-Twilio-Signature": sign("http://127.0.0.1:8000/twilio/sms", form)},
    )
    assert handle_inbox(store, bot, local) == 1
    (row,) = store.messages.all("outbound")
    assert row["media"] == [
        "http://127.0.0.1:8000/media/logo.png",
        "http://127.0.0.1:8000/media/helpdesk.png",
    ]


def _helpdesk() -> Bot:
    from textwire.examples.helpdesk import create_bot

    return create_bot()


def test_queue_message_applies_the_same_checks(
    store: SqlStore, settings: Settings
) -> None:
    with pytest.raises(InvalidMessage, match="public URL"):
        queue_message(
            store,
            to=US,
            body="x",
            media=["http://192.168.0.2/a.png"],
            settings=settings,
        )
    ids = queue_message(store, to=UK, body="x" * 1590, media=PICS, settings=settings)
    assert len(ids) == 2
    allowed = settings.replace(allow_private_media=True)
    assert (
        len(
            queue_message(
                store,
                to=US,
                body="x",
                media=["http://192.168.0.2/a.png"],
                settings=allowed,
            )
        )
        == 1
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _head(content_type: str, size: int) -> Response:
    response = Response(b"", content_type=content_type)
    response.automatically_set_content_length = False
    response.headers["Content-Length"] = str(size)
    return response


def test_probe_reports_each_bad_url(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/ok.png", method="HEAD").respond_with_response(
        _head("image/png", 1024)
    )
    httpserver.expect_request("/page", method="HEAD").respond_with_data(
        "", content_type="text/html; charset=utf-8"
    )
    httpserver.expect_request("/huge.jpg", method="HEAD").respond_with_response(
        _head("image/jpeg", 6 * 1024 * 1024)
    )
    httpserver.expect_request("/clip.mp4", method="HEAD").respond_with_response(
        _head("video/mp4", 600 * 1024)
    )
    urls = [
        httpserver.url_for("/ok.png"),
        httpserver.url_for("/page"),
        httpserver.url_for("/huge.jpg"),
        httpserver.url_for("/missing.png"),
        httpserver.url_for("/clip.mp4"),
        f"http://127.0.0.1:{_closed_port()}/gone.png",
    ]
    problems = probe_media(urls, timeout=2, allow_private=True)  # loopback server
    assert len(problems) == 5
    joined = "\n".join(problems)
    assert "web page" in joined
    assert "5120 KB limit for image/jpeg" in joined
    assert "HTTP 500" in joined or "HTTP 404" in joined
    assert "500 KB limit for video/mp4" in joined
    assert "unreachable" in joined
    assert not any(p.startswith(urls[0]) for p in problems)


def test_worker_with_probe_fails_unfetchable_media_without_an_api_call(
    store: SqlStore, settings: Settings, twilio_api: TwilioAPI, httpserver: HTTPServer
) -> None:
    from textwire.transports.fake import FakeTransport

    httpserver.expect_request("/page", method="HEAD").respond_with_data(
        "", content_type="text/html"
    )
    probing = settings.replace(probe_media=True, allow_private_media=True)
    (outbox_id,) = queue_message(
        store, to=US, body="look", media=[httpserver.url_for("/page")], settings=probing
    )
    fake = FakeTransport()
    worker = SendWorker(store, fake, settings=probing)
    worker.run_once()
    worker.stop()
    row = store.outbox.row(outbox_id)
    assert row is not None and row["status"] == "failed"
    assert "web page" in row["last_error"]
    assert fake.sent == []

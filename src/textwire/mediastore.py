"""Fetching inbound media from Twilio, and the copies textwire keeps of it.

Twilio serves an inbound MMS's files at ``MediaUrl{N}`` behind HTTP Basic
auth with the account SID and auth token ("Twilio enforces HTTP Basic
Authentication for all media URLs"), usually through a redirect to its CDN.
:class:`TwilioMediaSource` fetches them with those credentials — sent to
Twilio's API host only, never to another host a URL or a redirect points at
— within a size limit and a timeout, keeps a copy in a :class:`MediaStore`
(a folder, or any fsspec URL: ``s3://bucket/prefix`` with ``s3fs``
installed), and can delete the file from Twilio once it is copied
(``TEXTWIRE_DELETE_MEDIA_AFTER_COPY``, for privacy)::

    source = TwilioMediaSource.from_settings(settings)
    picture = source.fetch(msg, 0)     # FetchedMedia(data, content_type, stored)

A copy is found again by the message's SID and the file's index, so the
console shows it after Twilio deleted the original.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from textwire.attachments import FetchedMedia
from textwire.errors import ConfigError, InvalidMessage, MediaFetchError, MediaTooLarge
from textwire.media import check_media_host

if TYPE_CHECKING:
    from textwire.config import Settings
    from textwire.messages import Inbound

__all__ = ["MediaStore", "TwilioMediaSource", "media_source_for"]

logger = logging.getLogger("textwire.media")

_SID = re.compile(r"[A-Za-z0-9]{2,64}")
_CHUNK = 64 * 1024
_OFF = {"", "off", "none", "false", "0"}


class MediaStore:
    """Copies of inbound media, at ``<root>/<MessageSid>/<index>`` with the
    content type beside it (``<index>.json``, written last: a copy without it
    is an unfinished one and ignored).

    Args:
        url: a folder (``textwire-media``, relative to the working directory)
            or an fsspec URL (``s3://bucket/prefix``, ``memory://media``).
    """

    def __init__(self, url: str) -> None:
        import fsspec

        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = str(root).rstrip("/")
        self._local = "file" in _protocols(self.fs)

    def __repr__(self) -> str:
        return f"MediaStore({self.url!r})"

    def _path(self, sid: str, index: int) -> str:
        if not _SID.fullmatch(sid) or index < 0:
            raise ValueError(f"not a message SID and index: {sid!r}, {index!r}")
        return f"{self.root}/{sid}/{index}"

    def save(self, sid: str, index: int, media: FetchedMedia) -> str:
        """Keep ``media`` as file ``index`` of message ``sid``; its location."""
        path = self._path(sid, index)
        if self._local:
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(path, media.data)
        meta = {"content_type": media.content_type, "size": len(media.data)}
        self.fs.pipe_file(path + ".json", json.dumps(meta).encode())
        return self.fs.unstrip_protocol(path) if not self._local else path

    def load(self, sid: str, index: int) -> FetchedMedia | None:
        """The copy of file ``index`` of message ``sid``, if one is kept."""
        path = self._path(sid, index)
        try:
            meta = json.loads(self.fs.cat_file(path + ".json"))
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        location = path if self._local else self.fs.unstrip_protocol(path)
        return FetchedMedia(
            bytes(data), str(meta.get("content_type") or ""), stored=location
        )


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


class TwilioMediaSource:
    """Fetches inbound media with the account's credentials (``ctx.fetch_media``
    and the console use one).

    Args:
        account_sid, auth_token: the account's credentials (HTTP Basic).
        api_url: Twilio's API base URL: media URLs on its host get the
            credentials (the emulator's, in the sandbox).
        store: where copies are kept (``None``: none).
        max_bytes: the largest file fetched; a bigger one raises
            ``MediaTooLarge`` without being downloaded further.
        timeout: seconds one fetch may take, all in all.
        delete_after_copy: delete the file from Twilio once a copy is kept.
        allow_private: fetch media URLs on private hosts (not Twilio's).
    """

    def __init__(
        self,
        *,
        account_sid: str | None,
        auth_token: str | None,
        api_url: str = "https://api.twilio.com",
        store: MediaStore | None = None,
        max_bytes: int = 10 * 1024 * 1024,
        timeout: float = 15.0,
        delete_after_copy: bool = False,
        allow_private: bool = False,
    ) -> None:
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.api_url = api_url.rstrip("/")
        self.store = store
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.delete_after_copy = delete_after_copy
        self.allow_private = allow_private

    def __repr__(self) -> str:
        return f"TwilioMediaSource(api_url={self.api_url!r}, store={self.store!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioMediaSource:
        """The source ``settings`` describe (``TEXTWIRE_MEDIA_*``)."""
        where = settings.media_store.strip()
        try:
            store = None if where.lower() in _OFF else MediaStore(where)
        except (ImportError, ValueError) as exc:
            raise ConfigError(
                f"TEXTWIRE_MEDIA_STORE {where!r} cannot be used: {exc} (an s3:// "
                "store needs `pip install s3fs`, gs:// needs gcsfs)"
            ) from None
        return cls(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token,
            api_url=settings.twilio_api_url,
            store=store,
            max_bytes=settings.media_max_bytes,
            timeout=settings.media_timeout,
            delete_after_copy=settings.delete_media_after_copy,
            allow_private=settings.allow_private_media,
        )

    # -- what handlers and the console call ------------------------------------

    def fetch(self, msg: Inbound, index: int) -> FetchedMedia:
        """File ``index`` of ``msg`` (the ``MediaSource`` protocol)."""
        return self.get(msg.sid, index, msg.media[index].url)

    def get(self, sid: str, index: int, url: str) -> FetchedMedia:
        """File ``index`` of message ``sid``, served from ``url``: the kept
        copy when there is one, else fetched (and then kept).

        Raises:
            MediaFetchError: refused (401), gone (404), unreachable, too slow;
                ``MediaTooLarge`` over ``max_bytes``.
        """
        if self.store is not None:
            try:
                copy = self.store.load(sid, index)
            except (OSError, ValueError):
                logger.warning("media copy of %s/%d unreadable", sid, index)
                copy = None
            if copy is not None:
                return copy
        data, content_type = self.download(url)
        fetched = FetchedMedia(data, content_type)
        if self.store is None:
            return fetched
        try:
            stored = self.store.save(sid, index, fetched)
        except (OSError, ValueError) as exc:
            # The handler still gets the file; the console may not later.
            logger.error("media %s/%d not kept in %r: %s", sid, index, self.store, exc)
            return fetched
        if self.delete_after_copy:
            self.delete(url)
        return FetchedMedia(data, content_type, stored=stored)

    def kept(self, sid: str, index: int) -> FetchedMedia | None:
        """The copy of file ``index`` of message ``sid``, without fetching."""
        if self.store is None:
            return None
        try:
            return self.store.load(sid, index)
        except (OSError, ValueError):
            return None

    # -- HTTP ------------------------------------------------------------------

    def _on_api_host(self, url: str) -> bool:
        target = urlsplit(url)
        api = urlsplit(self.api_url)
        return (target.scheme, target.netloc) == (api.scheme, api.netloc)

    def _credentials(self, url: str) -> tuple[str, str] | None:
        """The account's credentials for ``url`` when it is on Twilio's API
        host (only there: a token sent elsewhere would leak)."""
        if self.account_sid and self._auth_token and self._on_api_host(url):
            return self.account_sid, self._auth_token
        return None

    def download(self, url: str) -> tuple[bytes, str]:
        """The bytes and content type at ``url``, with the credentials when it
        is Twilio's, within ``max_bytes`` and ``timeout``."""
        import requests

        auth = self._credentials(url)
        if not self._on_api_host(url) and not self.allow_private:
            try:
                check_media_host(url)
            except InvalidMessage as exc:
                raise MediaFetchError(str(exc)) from None
        deadline = time.monotonic() + self.timeout
        try:
            with requests.get(
                url,
                auth=auth,
                stream=True,
                timeout=(min(5.0, self.timeout), self.timeout),
                # requests drops the Authorization header when a redirect
                # leaves the host (Twilio redirects media to its CDN).
                allow_redirects=True,
                headers={"Accept": "*/*"},
            ) as response:
                _check_status(response.status_code, self._on_api_host(url))
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise self._too_large(int(declared))
                data = self._read(response, deadline)
                content_type = (
                    (response.headers.get("Content-Type") or "")
                    .split(";")[0]
                    .strip()
                    .lower()
                ) or "application/octet-stream"
        except requests.Timeout:
            raise MediaFetchError(
                f"media fetch timed out after {self.timeout:g} s "
                "(TEXTWIRE_MEDIA_TIMEOUT)"
            ) from None
        except requests.RequestException as exc:
            raise MediaFetchError(f"media unreachable: {type(exc).__name__}") from None
        return data, content_type

    def _read(self, response: Any, deadline: float) -> bytes:
        parts: list[bytes] = []
        total = 0
        for chunk in response.iter_content(_CHUNK):
            total += len(chunk)
            if total > self.max_bytes:
                raise self._too_large(None)
            if time.monotonic() > deadline:
                raise MediaFetchError(
                    f"media fetch took over {self.timeout:g} s (TEXTWIRE_MEDIA_TIMEOUT)"
                )
            parts.append(chunk)
        return b"".join(parts)

    def _too_large(self, size: int | None) -> MediaTooLarge:
        what = f"{size} bytes" if size is not None else "more"
        return MediaTooLarge(
            f"media file is {what}, over TEXTWIRE_MEDIA_MAX_BYTES "
            f"({self.max_bytes} bytes): not fetched"
        )

    def delete(self, url: str) -> bool:
        """Delete a media file from Twilio (``DELETE …/Media/ME….json``);
        whether it is gone. Failures are logged, never raised: the copy is
        kept either way."""
        import requests

        auth = self._credentials(url)
        if auth is None:
            logger.warning("not deleting media outside Twilio's API: %s", url)
            return False
        target = url.split("?", 1)[0]
        if not target.endswith(".json"):
            target += ".json"
        try:
            response = requests.delete(target, auth=auth, timeout=self.timeout)
        except requests.RequestException as exc:
            logger.warning("media delete failed: %s", type(exc).__name__)
            return False
        if response.status_code in (204, 200, 404):
            logger.info("media deleted from Twilio after copying: %s", target)
            return True
        logger.warning("media delete answered HTTP %d", response.status_code)
        return False


def _check_status(status: int, on_api_host: bool) -> None:
    if 200 <= status < 300:
        return
    if status in (401, 403):
        hint = (
            "Twilio refused the account's credentials: check TWILIO_ACCOUNT_SID "
            "and TWILIO_AUTH_TOKEN"
            if on_api_host
            else "the media URL needs credentials textwire does not send to this "
            "host (only to TEXTWIRE_TWILIO_API_URL's)"
        )
        raise MediaFetchError(f"media refused (HTTP {status}): {hint}", status=status)
    if status == 404:
        raise MediaFetchError(
            "media not found (HTTP 404): deleted from Twilio, or a wrong URL",
            status=status,
        )
    raise MediaFetchError(f"media fetch answered HTTP {status}", status=status)


def media_source_for(settings: Settings) -> TwilioMediaSource:
    """The media source of ``settings`` (one per worker / web process)."""
    return TwilioMediaSource.from_settings(settings)

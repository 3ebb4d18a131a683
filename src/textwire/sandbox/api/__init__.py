"""The emulator's REST API: Twilio's 2010-04-01 Messages and IncomingPhoneNumbers.

A Flask blueprint (``/2010-04-01/...``, JSON only) close enough to Twilio that
the unmodified ``twilio`` client works against it with
``client.api.base_url = "http://127.0.0.1:8000"``:

* HTTP basic auth with the AccountSid and AuthToken (401 / 20003 otherwise);
  another account's SID in the path is 404 / 20404;
* ``POST Messages.json`` validates as Twilio does and answers Twilio's error
  codes in Twilio's error body ``{code, message, more_info, status}``:
  21604 no To (or a JSON body), 21211 To not a number, 21603 neither From nor
  MessagingServiceSid, 21212 From unreadable, 21606 From not the account's,
  21701 a MessagingServiceSid that is malformed or not one of the account's
  services, 21704 service without numbers, 21602 no
  body and no media, 21617 body over 1600 characters, 21623 over 10 media,
  21620 a media URL that is not absolute http(s), 21609 bad StatusCallback,
  21266 To equal to From, 21610 recipient texted STOP. Through a Messaging
  Service the message answers ``accepted`` with ``from: null`` and
  ``num_segments: "0"`` until the carrier queues it from a number of the
  service's pool (OAI; twilio-facts §4.2);
* ``GET Messages.json`` lists newest first with the To / From / DateSent /
  DateSent< / DateSent> filters and Twilio's paging (PageSize, Page,
  PageToken, ``next_page_uri`` …); fetch, update (redact with ``Body=""``,
  ``Status=canceled``) and delete one message; its Media list, Media
  resources and the bytes of pictures virtual phones sent;
* ``IncomingPhoneNumbers``: list (PhoneNumber filter, any format, ``*``
  wildcards), fetch and update of the webhook fields.

One module per resource, each a set of module-level views (``messages``,
``media``, ``numbers``), with ``paging``, ``errors`` and ``faults`` beside
them; the views reach the account state, the carrier and the fault knobs of
their app through ``current_app.extensions`` (:mod:`.context`). Part of the
emulator proper: nothing here imports textwire's core; Twilio's rules are in
:mod:`textwire.sandbox.rules`.

``Faults`` adds latency, 500s, 429s and accepted-then-stalled creates, for
tests and benchmarks of a client's retry logic.

Choices where Twilio is silent or the emulator is smaller (also in the
report of issue 3): a number without ``+`` in ``To`` is read in the country
of ``From``; a Messaging Service picks the first number of its pool in the
recipient's country, else its first number; ``Status=canceled`` also
cancels a message still ``queued``/``accepted`` (Twilio: only scheduled ones;
the emulator does not schedule); DateSent filters fall back on
``date_created`` for messages not yet sent; a time of exactly midnight in a
DateSent filter is read as a date (twilio-python sends dates that way).
"""

from __future__ import annotations

from flask import Blueprint, Response
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException

from textwire.sandbox.api import media, messages, numbers
from textwire.sandbox.api.context import EXTENSION, Emulator, authenticate
from textwire.sandbox.api.errors import (
    TwilioApiError,
    http_error,
    not_found,
    twilio_error,
)
from textwire.sandbox.api.faults import Faults
from textwire.sandbox.carrier import Carrier
from textwire.sandbox.rules import API_VERSION
from textwire.sandbox.state import EmulatorState

__all__ = ["Faults", "TwilioApiError", "create_api_blueprint"]

_ACCOUNT = "/Accounts/<account_sid>"
_ROUTES = (
    ("POST", "/Messages.json", messages.create_message),
    ("GET", "/Messages.json", messages.list_messages),
    ("GET", "/Messages/<sid>.json", messages.fetch_message),
    ("POST", "/Messages/<sid>.json", messages.update_message),
    ("DELETE", "/Messages/<sid>.json", messages.delete_message),
    ("GET", "/Messages/<message_sid>/Media.json", media.list_media),
    ("GET", "/Messages/<message_sid>/Media/<media_ref>", media.media_content),
    ("DELETE", "/Messages/<message_sid>/Media/<media_sid>.json", media.delete_media),
    ("GET", "/IncomingPhoneNumbers.json", numbers.list_numbers),
    ("GET", "/IncomingPhoneNumbers/<sid>.json", numbers.fetch_number),
    ("POST", "/IncomingPhoneNumbers/<sid>.json", numbers.update_number),
)


def _unknown(rest: str) -> Response:
    raise not_found()


def create_api_blueprint(
    state: EmulatorState, carrier: Carrier, faults: Faults | None = None
) -> Blueprint:
    """Twilio's REST API 2010-04-01 over ``state``, at ``/2010-04-01``.

    One per app: registering it stores the emulator in ``app.extensions``,
    where the views find it.

    Args:
        state: the emulator's account, numbers, phones and messages.
        carrier: gets every accepted outbound message (``on_created``).
        faults: latency and failure knobs; none by default.
    """
    held = Emulator(state, carrier, faults if faults is not None else Faults())
    bp = Blueprint("twilio_api", __name__, url_prefix=f"/{API_VERSION}")

    def install(setup: BlueprintSetupState) -> None:
        if EXTENSION in setup.app.extensions:
            raise RuntimeError("this app already serves an emulator's API")
        setup.app.extensions[EXTENSION] = held

    bp.record_once(install)
    bp.register_error_handler(TwilioApiError, twilio_error)
    bp.register_error_handler(HTTPException, http_error)
    bp.before_request(authenticate)
    for method, path, view in _ROUTES:
        bp.add_url_rule(_ACCOUNT + path, view.__name__, view, methods=[method])
    bp.add_url_rule(
        "/<path:rest>",
        "unknown",
        _unknown,
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    )
    return bp

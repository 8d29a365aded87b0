"""The request's Content-Type, checked before Django builds the request from it.

Request bodies are UTF-8 (RFC 8259 for JSON; the admin's forms and SNS's messages are UTF-8
too). A ``Content-Type`` with no charset or ``charset=utf-8`` (any case, quoted or not) is
accepted; anything else is answered ``415`` before Django sees the request:

- another charset, including names Python's codec registry knows that are not text
  encodings (``base64``, ``rot13``, ``zlib``, ``hex``...): Django would take them as the
  request's encoding, and decoding the body, the query string or a form with one raises
  ``LookupError``, a 500;
- a header Django's own parser cannot read (an RFC 2231 parameter naming an unknown
  encoding, a NUL in the charset...): Django raises while *building* the request, before any
  middleware or error handler, a 500 from the server.

Under ``/api/`` the answer has the API's error shape; elsewhere it is plain text. This is a
WSGI wrapper (``shop.wsgi``) because the second kind fails before Django's middleware runs;
no library does this. The API's parser checks the charset too (``charset_problem``), for
requests that reach DRF another way (the test client).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from django.utils.http import parse_header_parameters

ACCEPTED_CHARSET = "utf-8"
API_PREFIX = "/api/"


def charset_problem(content_type: str | None) -> str | None:
    """Why a request with this Content-Type is refused; None when it is acceptable."""
    if not content_type:
        return None
    try:
        _, params = parse_header_parameters(content_type)
    except Exception:  # whatever Django's own parser raises, Django could not build a request
        return "The Content-Type header cannot be parsed."
    charset = params.get("charset")
    if charset is None or charset.strip().lower() == ACCEPTED_CHARSET:
        return None
    return "Only UTF-8 request bodies are accepted (no charset, or charset=utf-8)."


def _refusal(path: str, detail: str) -> tuple[str, list[tuple[str, str]], bytes]:
    if path.startswith(API_PREFIX):
        body = json.dumps(
            {
                "type": "client_error",
                "errors": [{"code": "unsupported_media_type", "detail": detail, "attr": None}],
            }
        ).encode()
        content_type = "application/json"
    else:
        body, content_type = f"{detail}\n".encode(), "text/plain; charset=utf-8"
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    return "415 Unsupported Media Type", headers, body


class ContentTypeGuard:
    """WSGI middleware: refuse what ``charset_problem`` refuses, pass everything else on."""

    def __init__(self, application: Callable[..., Iterable[bytes]]) -> None:
        self.application = application

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        problem = charset_problem(environ.get("CONTENT_TYPE"))
        if problem is None:
            return self.application(environ, start_response)
        status, headers, body = _refusal(environ.get("PATH_INFO", ""), problem)
        start_response(status, headers)
        return [body]

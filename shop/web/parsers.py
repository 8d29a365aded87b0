"""The API's JSON parser."""

from __future__ import annotations

import json
from typing import Any

from rest_framework import exceptions
from rest_framework.parsers import JSONParser

from shop.web.edge import ACCEPTED_CHARSET, charset_problem


class BoundedJSONParser(JSONParser):
    """JSON parser that survives hostile nesting and refuses NaN/Infinity.

    DRF's parser turns only ValueError into a 400: Python's json raises RecursionError on
    deeply nested input, which would otherwise be a 500. (The body size is bounded by
    Django's DATA_UPLOAD_MAX_MEMORY_SIZE when DRF reads ``request.body``: a 413.)
    The body is UTF-8: any other charset is a 415 (``shop.web.edge``, which refuses it before
    Django in the web server, has the reasons), never a codec's LookupError.
    """

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        request = (parser_context or {}).get("request")
        problem = charset_problem(getattr(request, "content_type", None))
        if problem:
            raise exceptions.UnsupportedMediaType(media_type, detail=problem)
        try:
            text = stream.read().decode(ACCEPTED_CHARSET)
            return json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise exceptions.ParseError(f"JSON parse error - {_describe(exc)}") from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _describe(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "the document is nested too deeply"
    return str(exc)

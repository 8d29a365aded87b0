"""The API's JSON parser."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import JSONParser


class BoundedJSONParser(JSONParser):
    """JSON parser that survives hostile nesting and refuses NaN/Infinity.

    DRF's parser turns only ValueError into a 400: Python's json raises RecursionError on
    deeply nested input, which would otherwise be a 500. (The body size is bounded by
    Django's DATA_UPLOAD_MAX_MEMORY_SIZE when DRF reads ``request.body``: a 413.)
    """

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
            return json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise exceptions.ParseError(f"JSON parse error - {_describe(exc)}") from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _describe(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "the document is nested too deeply"
    return str(exc)

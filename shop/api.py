"""Cross-cutting pieces of the REST API: the error shape and unknown paths.

Every error under /api/ has one JSON shape, drf-standardized-errors'::

    {"type": "validation_error" | "client_error" | "server_error",
     "errors": [{"code": "...", "detail": "...", "attr": "items.0.sku" | null}]}
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from drf_spectacular.utils import extend_schema
from drf_standardized_errors import handler as standardized_handler
from drf_standardized_errors.openapi_serializers import ClientErrorEnum, ServerErrorEnum
from rest_framework import exceptions, serializers
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.exceptions import ErrorDetail

from shop.api_errors import Conflict, PayloadTooLarge, ServiceUnavailable, Unprocessable
from shop.exceptions import ApplicationError


class ExceptionHandler(standardized_handler.ExceptionHandler):
    """drf-standardized-errors' handler, taught the project's own exceptions."""

    def convert_known_exceptions(self, exc: Exception) -> Exception:
        if isinstance(exc, ApplicationError):
            return _to_api_exception(exc)
        if isinstance(exc, RequestDataTooBig):
            return PayloadTooLarge(
                f"Request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
            )
        return super().convert_known_exceptions(exc)

    def report_exception(self, exc: exceptions.APIException, response) -> None:
        """A dependency that is down (the documented 503) is logged where it fails, once per
        attempt (e.g. ``shop.cognito``), and by Django as one line per answer: not with a
        traceback and an error report per request, as other server errors are."""
        if isinstance(exc, ServiceUnavailable):
            return
        super().report_exception(exc, response)


def _to_api_exception(exc: ApplicationError) -> exceptions.APIException:
    detail: Any
    if exc.errors:
        detail = {
            path: [ErrorDetail(message, code=exc.code) for message in messages]
            for path, messages in exc.errors.items()
        }
    else:
        detail = [ErrorDetail(exc.message, code=exc.code)]
    if exc.kind == "conflict":
        return Conflict(detail=detail)
    if exc.kind == "unprocessable":
        return Unprocessable(detail=detail)
    return exceptions.ValidationError(detail=detail)


# OpenAPI shapes of the error answers drf-standardized-errors has no serializer for.
class _ClientError(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()
    attr = serializers.CharField(allow_null=True)


class ConflictErrorResponseSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=ClientErrorEnum.choices)
    errors = _ClientError(many=True)


class PayloadTooLargeErrorResponseSerializer(ConflictErrorResponseSerializer):
    pass


class UnprocessableErrorResponseSerializer(ConflictErrorResponseSerializer):
    pass


class ServiceUnavailableErrorResponseSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=ServerErrorEnum.choices)
    errors = _ClientError(many=True)


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@authentication_classes([])
@permission_classes([])
def api_not_found(request, *args, **kwargs):
    """Unknown paths under /api/ answer in the API's error shape, not Django's HTML 404."""
    raise exceptions.NotFound("No API endpoint at this path.")


def schema_index_attrs(result: dict, generator, request, public) -> dict:
    """drf-spectacular hook: list-item error paths as patterns, not the literal "INDEX".

    drf-standardized-errors documents an error on a list item as ``items.INDEX.quantity``;
    the API answers ``items.0.quantity``. Turn such enums into the pattern they stand for.
    """
    for component in result.get("components", {}).get("schemas", {}).values():
        attr = component.get("properties", {}).get("attr", {})
        values = attr.get("enum") or []
        if any(isinstance(v, str) and "INDEX" in v for v in values):
            attr.pop("enum")
            alternatives = "|".join(re.escape(v).replace("INDEX", r"\d+") for v in values)
            attr["pattern"] = f"^({alternatives})$"
    return result

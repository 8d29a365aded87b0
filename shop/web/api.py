"""Cross-cutting pieces of the REST API: the error shape and unknown paths.

Every error under /api/ has one JSON shape, drf-standardized-errors'::

    {"type": "validation_error" | "client_error" | "server_error",
     "errors": [{"code": "...", "detail": "...", "attr": "items.0.sku" | null}]}
"""

from __future__ import annotations

import re
import threading
from types import ModuleType
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils import translation
from drf_spectacular import generators
from drf_spectacular.utils import extend_schema
from drf_standardized_errors import handler as standardized_handler
from drf_standardized_errors.openapi_serializers import ClientErrorEnum, ServerErrorEnum
from rest_framework import exceptions, serializers
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.exceptions import ErrorDetail

from shop.exceptions import ApplicationError
from shop.web.api_errors import Conflict, PayloadTooLarge, ServiceUnavailable, Unprocessable


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
        attempt (e.g. ``shop.aws.cognito``), and by Django as one line per answer: not with a
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


class SchemaGenerator(generators.SchemaGenerator):
    """drf-spectacular's generator (``DEFAULT_GENERATOR_CLASS``), remembering what it built.

    The schema is a function of the code (URLconf, views, serializers, settings), not of the
    request: the public schema (``SERVE_PUBLIC``, the default) filters nothing by who asks,
    and no ``SERVERS`` are derived from the request's host. So each process builds it once
    per URLconf, version and language (about 65 ms on the benchmark machine, on every
    anonymous ``GET /api/schema/`` before), and answers from memory afterwards. Changing
    the settings it depends on (tests) forgets it.
    """

    _built: ClassVar[dict[tuple, dict]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()
    #: How many schemas this process has built (the benchmark and the tests read it).
    builds: ClassVar[int] = 0

    def __init__(self, *args, patterns=None, **kwargs) -> None:
        self._patterns_given = patterns is not None
        super().__init__(*args, patterns=patterns, **kwargs)

    def get_schema(self, request=None, public=False):
        key = self._key(public)
        if key is None:  # an explicit list of patterns or URL modules: not worth remembering
            return super().get_schema(request=request, public=public)
        with SchemaGenerator._lock:
            if key not in SchemaGenerator._built:
                SchemaGenerator._built[key] = super().get_schema(request=request, public=public)
                SchemaGenerator.builds += 1
            return SchemaGenerator._built[key]

    @classmethod
    def forget(cls) -> None:
        """Forget every schema built (its settings changed; tests)."""
        with cls._lock:
            cls._built.clear()

    def _key(self, public: bool) -> tuple | None:
        if self._patterns_given:
            return None
        urlconf = self.urlconf or settings.ROOT_URLCONF
        if isinstance(urlconf, ModuleType):
            urlconf = urlconf.__name__
        if not isinstance(urlconf, str):
            return None
        return (urlconf, self.api_version, bool(public), translation.get_language())


@receiver(setting_changed)
def _schema_forget(setting: str, **kwargs: Any) -> None:
    if setting in {"ROOT_URLCONF", "REST_FRAMEWORK", "SPECTACULAR_SETTINGS", "INSTALLED_APPS"}:
        SchemaGenerator.forget()

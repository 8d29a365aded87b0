"""The orders REST API: parse, call one service or selector, serialize."""

from __future__ import annotations

import hashlib
import json

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_standardized_errors.openapi_validation_errors import extend_validation_errors
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.mixins import ListModelMixin
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle

from orders import idempotency, selectors, services
from orders.serializers import (
    CustomerOutputSerializer,
    OrderInputSerializer,
    OrderOutputSerializer,
    ProductSerializer,
)
from shop.web.api import ConflictErrorResponseSerializer, UnprocessableErrorResponseSerializer


class ProductListApi(ListModelMixin, GenericAPIView):
    """Active products of the catalog. Public."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    serializer_class = ProductSerializer

    def get_queryset(self):
        return selectors.product_list_active()

    def get(self, request, *args, **kwargs):
        return self.list(request, *args, **kwargs)


class MeApi(GenericAPIView):
    serializer_class = CustomerOutputSerializer

    @extend_schema(summary="Who the token names, and how many orders they have placed.")
    def get(self, request, *args, **kwargs):
        customer = request.user
        count = selectors.order_count_for_customer(customer_id=customer.customer_id)
        data = {"id": customer.customer_id, "email": customer.email, "order_count": count}
        return Response(CustomerOutputSerializer(data).data)


class OrderPlacementThrottle(UserRateThrottle):
    """At most ORDER_PLACEMENT_RATE new orders per customer; reading is not limited."""

    scope = "order_placement"

    def allow_request(self, request, view) -> bool:
        if request.method != "POST":
            return True
        return super().allow_request(request, view)


@extend_validation_errors(["required", "null"], field_name="shipping_address", methods=["post"])
@extend_validation_errors(["required", "null", "invalid"], field_name="items", methods=["post"])
@extend_validation_errors(["null"], field_name="items.INDEX", methods=["post"])
@extend_validation_errors(
    ["min_length", "max_length"], field_name="items.non_field_errors", methods=["post"]
)
@extend_validation_errors(["unknown_sku"], field_name="items.INDEX.sku", methods=["post"])
@extend_validation_errors(["invalid"], field_name="Idempotency-Key", methods=["post"])
class OrderListCreateApi(ListModelMixin, GenericAPIView):
    serializer_class = OrderOutputSerializer
    throttle_classes = [OrderPlacementThrottle]

    def get_queryset(self):
        return selectors.order_list_for_customer(customer_id=self.request.user.customer_id)

    @extend_schema(summary="The caller's own orders, newest first.")
    def get(self, request, *args, **kwargs):
        return self.list(request, *args, **kwargs)

    @extend_schema(
        summary="Place an order.",
        description=(
            "Send an `Idempotency-Key` header (up to 255 printable ASCII characters, e.g. a "
            "UUID) to make retries safe: the same key with the same body, from the same "
            "customer and within 24 hours, returns the first answer (same status and body, "
            "header `Idempotent-Replayed: true`) without placing a second order; the same key "
            "with another body is a 422."
        ),
        request=OrderInputSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="Makes a retried request safe; see above.",
            )
        ],
        responses={
            201: OrderOutputSerializer,
            409: OpenApiResponse(
                ConflictErrorResponseSerializer,
                description="Not enough stock: one error per short SKU, with the requested "
                "and available quantities.",
            ),
            422: OpenApiResponse(
                UnprocessableErrorResponseSerializer,
                description="The Idempotency-Key was used before with a different body.",
            ),
        },
    )
    def post(self, request, *args, **kwargs):
        key = _idempotency_key(request)
        serializer = OrderInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        order_args = {
            "customer_id": request.user.customer_id,
            "customer_email": request.user.email,
            "shipping_address": services.ShippingAddress(**data["shipping_address"]),
            "lines": [services.LineRequest(**item) for item in data["items"]],
        }
        headers = {}

        def place() -> dict:
            # The new order as saved: its lines and email record are in memory (no query).
            return OrderOutputSerializer(services.order_place(**order_args)).data

        if key is None:
            body = place()
        else:
            # What a retry with this key answers is this API's: the first answer, stored.
            answer = idempotency.order_answer_once(
                customer_id=request.user.customer_id,
                idempotency_key=key,
                fingerprint=_fingerprint(request.data),
                answer=place,
            )
            body = answer.body
            if answer.replayed:
                headers["Idempotent-Replayed"] = "true"
        headers["Location"] = request.build_absolute_uri(f"{request.path}{body['id']}/")
        return Response(body, status=status.HTTP_201_CREATED, headers=headers)


def _idempotency_key(request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= 255 and key.isascii() and key.isprintable()):
        raise ValidationError({"Idempotency-Key": ["Must be 1 to 255 printable ASCII characters."]})
    return key


def _fingerprint(data) -> str:
    """SHA-256 of the body as canonical JSON, for any JSON a client can send: a lone
    surrogate (valid JSON, not valid text) in a field the serializer ignores is hashed as
    its UTF-8-style bytes (``surrogatepass``) instead of failing the request."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


class OrderDetailApi(GenericAPIView):
    serializer_class = OrderOutputSerializer

    def get_queryset(self):
        return selectors.order_list_for_customer(customer_id=self.request.user.customer_id)

    @extend_schema(summary="One of the caller's own orders (404 for anyone else's).")
    def get(self, request, pk: int, *args, **kwargs):
        order = get_object_or_404(self.get_queryset(), pk=pk)
        return Response(OrderOutputSerializer(order).data)

"""The orders REST API: parse, call one service or selector, serialize."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.mixins import ListModelMixin
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle

from orders import selectors, services
from orders.serializers import OrderInputSerializer, OrderOutputSerializer, ProductSerializer
from shop.api import ConflictErrorResponseSerializer


class ProductListApi(ListModelMixin, GenericAPIView):
    """Active products of the catalog. Public."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    serializer_class = ProductSerializer

    def get_queryset(self):
        return selectors.product_list_active()

    def get(self, request, *args, **kwargs):
        return self.list(request, *args, **kwargs)


class OrderPlacementThrottle(UserRateThrottle):
    """At most ORDER_PLACEMENT_RATE new orders per customer; reading is not limited."""

    scope = "order_placement"

    def allow_request(self, request, view) -> bool:
        if request.method != "POST":
            return True
        return super().allow_request(request, view)


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
        request=OrderInputSerializer,
        responses={
            201: OrderOutputSerializer,
            409: OpenApiResponse(
                ConflictErrorResponseSerializer,
                description="Not enough stock: one error per short SKU, with the requested "
                "and available quantities.",
            ),
        },
    )
    def post(self, request, *args, **kwargs):
        serializer = OrderInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        order = services.order_place(
            customer_id=request.user.customer_id,
            customer_email=request.user.email,
            shipping_address=services.ShippingAddress(**data["shipping_address"]),
            lines=[services.LineRequest(**item) for item in data["items"]],
        )
        order = get_object_or_404(self.get_queryset(), pk=order.pk)
        body = OrderOutputSerializer(order).data
        location = request.build_absolute_uri(f"{request.path}{order.pk}/")
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": location})


class OrderDetailApi(GenericAPIView):
    serializer_class = OrderOutputSerializer

    def get_queryset(self):
        return selectors.order_list_for_customer(customer_id=self.request.user.customer_id)

    @extend_schema(summary="One of the caller's own orders (404 for anyone else's).")
    def get(self, request, pk: int, *args, **kwargs):
        order = get_object_or_404(self.get_queryset(), pk=pk)
        return Response(OrderOutputSerializer(order).data)

from django.urls import path

from orders import apis

urlpatterns = [
    path("products/", apis.ProductListApi.as_view(), name="product-list"),
    path("me/", apis.MeApi.as_view(), name="me"),
    path("orders/", apis.OrderListCreateApi.as_view(), name="order-list"),
    path("orders/<int:pk>/", apis.OrderDetailApi.as_view(), name="order-detail"),
]

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient

from orders.models import Product
from shop import cognito, provisioning
from tests.pipeline import DLQ_URL, drain


@pytest.fixture
def queues():
    """The session's order queue and its DLQ, empty before and after the test."""
    drain(settings.ORDER_QUEUE_URL)
    drain(DLQ_URL)
    yield
    drain(settings.ORDER_QUEUE_URL)
    drain(DLQ_URL)


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Each test starts with empty rate-limit counters."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    """Each test starts with an empty JWKS cache, as a new process would."""
    cognito._key_sets.clear()
    yield
    cognito._key_sets.clear()


def emulator_token(email: str = provisioning.VERIFIED_CUSTOMER) -> str:
    """A real ID token from the emulator's Cognito (USER_PASSWORD_AUTH)."""
    return cognito.id_token_obtain(email=email, password=provisioning.DEMO_PASSWORD)


@pytest.fixture
def alice_token() -> str:
    return emulator_token(provisioning.VERIFIED_CUSTOMER)


@pytest.fixture
def bob_token() -> str:
    return emulator_token(provisioning.UNVERIFIED_CUSTOMER)


def auth(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def alice(api_client, alice_token) -> APIClient:
    api_client.credentials(**auth(alice_token))
    return api_client


def make_product(
    *, sku: str | None = None, price: str = "10.00", stock: int = 10, is_active: bool = True
) -> Product:
    return Product.objects.create(
        sku=sku or f"SKU-{uuid.uuid4().hex[:8]}",
        name=f"Product {sku or ''}".strip(),
        price=Decimal(price),
        stock=stock,
        is_active=is_active,
    )


def order_body(*items: tuple[str, int], **address) -> dict:
    return {
        "shipping_address": {
            "name": "Alice Example",
            "line1": "1 Main Street",
            "city": "Springfield",
            "postal_code": "12345",
            "country": "US",
            **address,
        },
        "items": [{"sku": sku, "quantity": quantity} for sku, quantity in items],
    }


# --- forged tokens --------------------------------------------------------------------


@pytest.fixture(scope="session")
def attacker_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def id_claims(**overrides) -> dict:
    now = int(time.time())
    claims = {
        "sub": str(uuid.uuid4()),
        "email": "mallory@example.com",
        "email_verified": True,
        "iss": settings.COGNITO_ISSUER,
        "aud": settings.COGNITO_APP_CLIENT_ID,
        "token_use": "id",
        "iat": now,
        "auth_time": now,
        "exp": now + 3600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(claims: dict, key, *, kid: str = "dummy", alg: str = "RS256") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})

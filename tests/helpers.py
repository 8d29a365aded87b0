"""Helpers many test modules use that are not rows (those are tests/factories.py): request
bodies, real and forged Cognito tokens, the Authorization header, /metrics samples.

Fixtures live in the conftest.py files; no test module imports another (tests/test_layout.py).
"""

from __future__ import annotations

import time
import uuid

import jwt
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from shop.aws import cognito, provisioning

# --- the API ------------------------------------------------------------------------------


def order_body(*items: tuple[str, int], **address) -> dict:
    """A POST /api/orders/ body: ``order_body(("MUG", 2), city="Paris")``."""
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


def auth(token: str) -> dict[str, str]:
    """The Authorization header of a test client request, for ``token``."""
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


# --- tokens -------------------------------------------------------------------------------


def emulator_token(email: str = provisioning.VERIFIED_CUSTOMER) -> str:
    """A real ID token from the emulator's Cognito (USER_PASSWORD_AUTH)."""
    return cognito.id_token_obtain(email=email, password=provisioning.DEMO_PASSWORD)


def id_claims(**overrides) -> dict:
    """The claims of an ID token of our pool, for a forged one; an override of None drops
    the claim."""
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


# --- /metrics -----------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of an exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client, **extra) -> dict[tuple[str, tuple], float]:
    """GET /metrics with the test client (``extra``: its WSGI environ), as samples."""
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return samples(response.content.decode())

"""The admin's middleware (sessions, the signed-in user, messages) runs for everything but the
token API under /api/; the security headers and CSRF's check do not change.

Requests go through Django's test client (the whole middleware stack); what each request
was given is read from the request Django built (``response.wsgi_request``).
"""

from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import StaffFactory
from tests.helpers import auth

pytestmark = pytest.mark.django_db

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def test_api_requests_skip_the_admins_middleware(api_client, alice_token):
    for response in (
        api_client.get("/api/products/"),
        api_client.get("/api/me/", **auth(alice_token)),
        api_client.get("/api/no-such-endpoint/"),
    ):
        request = response.wsgi_request
        assert response.status_code in {200, 404}
        assert not hasattr(request, "session")
        assert not hasattr(request, "_messages")
        assert "Set-Cookie" not in response.headers and not response.cookies
        assert "Cookie" not in response.headers.get("Vary", "")


def test_api_and_admin_answers_carry_the_same_security_headers(api_client):
    for response in (api_client.get("/api/products/"), Client().get("/admin/login/")):
        sent = {name: response.headers.get(name) for name in SECURITY_HEADERS}
        assert sent == SECURITY_HEADERS


def test_the_admin_keeps_its_sessions_csrf_and_messages():
    staff = StaffFactory(
        username="staff", email="staff@example.com", password="pw-Str0ng!", is_superuser=True
    )
    client = Client(enforce_csrf_checks=True)

    refused = client.post("/admin/login/", {"username": "staff", "password": "pw-Str0ng!"})
    assert refused.status_code == 403  # no CSRF token: refused, as before

    page = client.get("/admin/login/")
    assert hasattr(page.wsgi_request, "session") and hasattr(page.wsgi_request, "_messages")
    token = page.cookies["csrftoken"].value
    signed_in = client.post(
        "/admin/login/",
        {"username": "staff", "password": "pw-Str0ng!", "csrfmiddlewaretoken": token},
    )
    assert signed_in.status_code == 302
    assert client.get("/admin/").wsgi_request.user == staff

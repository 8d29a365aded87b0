"""X-Forwarded-For and X-Forwarded-Proto count only from TRUSTED_PROXY_CIDRS; the metrics
allow-list and the rate limits see the client they name; CORS only for listed origins."""

from __future__ import annotations

import ipaddress
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.test import override_settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from shop.web.proxies import address_parse, client_address, networks_parse
from tests.pipeline import WebServer, database_url

PROXIES = networks_parse(["10.0.0.0/16", "fd00::/8"])
#: Behind the load balancer (the VPC), and anywhere else.
INSIDE = st.one_of(
    st.integers(0, 2**16 - 1).map(lambda n: str(ipaddress.ip_address(0x0A000000 + n))),
    st.integers(0, 2**16 - 1).map(lambda n: f"fd00::{n:x}"),
)
OUTSIDE = st.one_of(
    st.ip_addresses(v=4).filter(lambda a: a not in ipaddress.ip_network("10.0.0.0/16")),
    st.ip_addresses(v=6).filter(lambda a: a not in ipaddress.ip_network("fd00::/8")),
).map(str)
#: Whatever a client writes into the header itself.
CLAIMS = st.lists(st.one_of(INSIDE, OUTSIDE, st.text(max_size=20)), max_size=5)


@given(claims=CLAIMS, client=OUTSIDE, hops=st.lists(INSIDE, max_size=3), peer=INSIDE)
@hypothesis_settings(max_examples=300, derandomize=True, database=None)
def test_the_client_is_the_rightmost_address_the_proxies_did_not_add(claims, client, hops, peer):
    """Whatever the client claims to the left, the result is the address the first trusted
    proxy saw: the client can neither hide nor pick its address."""
    forwarded_for = ", ".join([*claims, client, *hops])
    assert client_address(peer=peer, forwarded_for=forwarded_for, networks=PROXIES) == str(
        address_parse(client)
    )


@given(peer=OUTSIDE, forwarded_for=st.text(max_size=60))
@hypothesis_settings(max_examples=200, derandomize=True, database=None)
def test_an_untrusted_peer_is_the_client_whatever_it_says(peer, forwarded_for):
    assert client_address(peer=peer, forwarded_for=forwarded_for, networks=PROXIES) == peer


def test_chains_of_trusted_addresses_and_odd_entries():
    def client(xff: str, peer: str = "10.0.0.1") -> str:
        return client_address(peer=peer, forwarded_for=xff, networks=PROXIES)

    assert client("") == "10.0.0.1"  # a health check straight from the load balancer
    assert client("10.0.5.5, 10.0.0.9") == "10.0.5.5"  # all trusted: the leftmost
    assert client("203.0.113.5:4711") == "203.0.113.5"
    assert client("[2001:db8::5]:443") == "2001:db8::5"
    assert client("::ffff:203.0.113.5") == "203.0.113.5"
    assert client("203.0.113.5, junk, 10.0.0.7") == "10.0.0.7"  # stops at what is no address
    assert client("198.51.100.1", peer="not an address") == "not an address"


# --- through the middleware ------------------------------------------------------------------


def _client(remote_addr: str) -> APIClient:
    return APIClient(REMOTE_ADDR=remote_addr)


@pytest.mark.django_db
@override_settings(METRICS_ALLOWED_IPS=["203.0.113.7"])
def test_metrics_allow_list_ignores_forwarded_for_by_default():
    client = _client("127.0.0.1")
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 403
    assert _client("203.0.113.7").get("/metrics").status_code == 200


@pytest.mark.django_db
@override_settings(METRICS_ALLOWED_IPS=["203.0.113.7"], TRUSTED_PROXY_CIDRS=["10.0.0.0/16"])
def test_metrics_allow_list_sees_the_client_behind_a_trusted_proxy():
    behind = _client("10.0.3.4")
    assert behind.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 200
    # A client cannot claim the allowed address: the proxy appended the one it saw.
    spoofed = "203.0.113.7, 198.51.100.1"
    assert behind.get("/metrics", HTTP_X_FORWARDED_FOR=spoofed).status_code == 403
    # Nor can a peer outside the proxies' range.
    outside = _client("198.51.100.1")
    assert outside.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 403


@pytest.mark.django_db
@override_settings(TRUSTED_PROXY_CIDRS=["10.0.0.0/16"])
def test_the_anonymous_rate_limit_counts_per_real_client(monkeypatch):
    from rest_framework.throttling import AnonRateThrottle

    monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", {"anon": "3/minute"})
    behind = _client("10.0.0.2")

    def products(xff: str) -> int:
        return behind.get("/api/products/", HTTP_X_FORWARDED_FOR=xff).status_code

    assert [products("198.51.100.1") for _ in range(4)] == [200, 200, 200, 429]
    # Another client behind the same load balancer has its own budget...
    assert products("198.51.100.2") == 200
    # ...and the first cannot escape its own by claiming another address to the left.
    assert products("192.0.2.99, 198.51.100.1") == 429


# --- HTTPS detection, through the image's gunicorn ---------------------------------------------


def _production_server(tmp_path, name: str, **env: str) -> WebServer:
    server = WebServer(tmp_path / f"{name}.log")
    server.env.update(
        {
            "DJANGO_SETTINGS_MODULE": "shop.settings.production",
            "DJANGO_SECRET_KEY": "proxy-test-secret-0123456789abcdefghijklmnopqrstuvwxyz",
            "DJANGO_ALLOWED_HOSTS": "shop.example.com",
            "DATABASE_URL": database_url(),
            "METRICS_ALLOWED_IPS": "203.0.113.9",
            **env,
        }
    )
    return server


def _get(server: WebServer, path: str, **headers: str) -> int:
    request = urllib.request.Request(
        f"{server.url}{path}", headers={"Host": "shop.example.com", **headers}
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=20) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.mark.subprocess
@pytest.mark.django_db
def test_https_and_the_client_address_are_believed_only_from_trusted_proxies(tmp_path):
    """gunicorn on 127.0.0.1 with production settings: X-Forwarded-Proto from loopback is
    believed only when loopback is a trusted proxy (gunicorn's own default would always)."""
    untrusted = _production_server(tmp_path, "untrusted")
    trusted = _production_server(tmp_path, "trusted", TRUSTED_PROXY_CIDRS="127.0.0.1/32")
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(WebServer.start, [untrusted, trusted]))
    try:
        https = {"X-Forwarded-Proto": "https"}
        assert _get(untrusted, "/api/products/", **https) == 301  # not believed: redirected
        assert _get(trusted, "/api/products/", **https) == 200
        assert _get(trusted, "/api/products/") == 301  # the proxy says http
        assert _get(trusted, "/api/products/", **{"X-Forwarded-Proto": "http"}) == 301

        # /metrics answers an allowed client first; anyone else goes on to the redirect (or,
        # over HTTPS, a 403).
        client = {"X-Forwarded-For": "203.0.113.9"}
        assert _get(untrusted, "/metrics", **client) == 301
        assert _get(trusted, "/metrics", **client) == 200
        spoofed = {"X-Forwarded-For": "203.0.113.9, 192.0.2.1", **https}
        assert _get(trusted, "/metrics", **spoofed) == 403
    finally:
        untrusted.stop()
        trusted.stop()


# --- CORS --------------------------------------------------------------------------------------

ORIGIN = "https://app.example.com"


def _preflight(client: APIClient, origin: str = ORIGIN):
    return client.options(
        "/api/orders/",
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, idempotency-key",
    )


@pytest.mark.django_db
def test_no_cross_origin_access_by_default(api_client):
    assert settings.CORS_ALLOWED_ORIGINS == []
    response = _preflight(api_client)
    assert "access-control-allow-origin" not in response.headers
    response = api_client.get("/api/products/", HTTP_ORIGIN=ORIGIN)
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.django_db
@override_settings(CORS_ALLOWED_ORIGINS=[ORIGIN])
def test_listed_origins_may_call_the_api(api_client):
    response = _preflight(api_client)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key"} <= allowed
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in response.headers  # tokens, not cookies

    response = api_client.get("/api/products/", HTTP_ORIGIN=ORIGIN)
    assert response.headers["access-control-allow-origin"] == ORIGIN
    exposed = response.headers["access-control-expose-headers"]
    assert "Location" in exposed and "Idempotent-Replayed" in exposed

    # Another origin, and the pages that are not the API, get nothing.
    assert "access-control-allow-origin" not in _preflight(api_client, "https://evil.test")
    admin = api_client.get("/admin/login/", HTTP_ORIGIN=ORIGIN)
    assert "access-control-allow-origin" not in admin.headers

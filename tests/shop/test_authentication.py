"""Cognito ID tokens: real emulator tokens pass; every other kind of token gets 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.request

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.test import override_settings
from rest_framework.test import APIClient

from orders.models import Order, Product
from shop.aws import cognito
from tests.factories import ProductFactory
from tests.helpers import auth, id_claims, order_body, sign

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def product():
    return ProductFactory(sku="AUTH-1", stock=5)


@pytest.fixture
def trusted_test_key(attacker_key):
    """Trust a test key as if the pool had published it, to isolate the claim checks."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(attacker_key.public_key()))
    cognito.key_set()._keys["test-key"] = jwt.PyJWK.from_dict(
        {**jwk, "kid": "test-key", "alg": "RS256"}
    )
    return attacker_key


def _place(client, token: str):
    return client.post("/api/orders/", order_body(("AUTH-1", 1)), format="json", **auth(token))


def _assert_refused(client, token: str) -> None:
    before_stock = list(Product.objects.values_list("stock", flat=True))
    response = _place(client, token)
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["type"] == "client_error"
    assert Order.objects.count() == 0
    assert list(Product.objects.values_list("stock", flat=True)) == before_stock


def test_real_emulator_token_is_accepted(api_client, alice_token):
    response = _place(api_client, alice_token)
    assert response.status_code == 201, response.content
    claims = jwt.decode(alice_token, options={"verify_signature": False})
    order = Order.objects.get()
    assert order.customer_id == claims["sub"]
    assert order.customer_email == claims["email"] == "alice@example.com"


def test_no_token_gets_bare_bearer_challenge(api_client):
    response = api_client.get("/api/orders/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_access_token_is_refused(api_client):
    idp_response = cognito.aws.client("cognito-idp").initiate_auth(
        ClientId=settings.COGNITO_APP_CLIENT_ID,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "alice@example.com", "PASSWORD": "Demo-Passw0rd!"},
    )
    _assert_refused(api_client, idp_response["AuthenticationResult"]["AccessToken"])


def test_alg_none_is_refused(api_client, alice_token):
    _header, payload, _signature = alice_token.split(".")
    forged_header = base64.urlsafe_b64encode(
        json.dumps({"alg": "none", "kid": "dummy", "typ": "JWT"}).encode()
    ).rstrip(b"=")
    _assert_refused(api_client, f"{forged_header.decode()}.{payload}.")


def test_hs256_signed_with_the_public_key_is_refused(api_client):
    """The key-confusion attack: an HMAC token keyed with the pool's public key."""
    jwks = json.load(urllib.request.urlopen(settings.COGNITO_JWKS_URL, timeout=5))
    public_pem = jwt.PyJWK(jwks["keys"][0]).key.public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = (
        b64(json.dumps({"alg": "HS256", "kid": "dummy", "typ": "JWT"}).encode())
        + b"."
        + b64(json.dumps(id_claims()).encode())
    )
    signature = b64(hmac.new(public_pem, signing_input, hashlib.sha256).digest())
    _assert_refused(api_client, (signing_input + b"." + signature).decode())


def test_unknown_kid_is_refused(api_client, attacker_key):
    _assert_refused(api_client, sign(id_claims(), attacker_key, kid="not-a-pool-key"))


def test_token_signed_by_another_key_with_the_pools_kid_is_refused(api_client, attacker_key):
    _assert_refused(api_client, sign(id_claims(), attacker_key, kid="dummy"))


def test_tampered_payload_is_refused(api_client, alice_token):
    header, payload, signature = alice_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["email"] = "mallory@example.com"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    _assert_refused(api_client, f"{header}.{forged}.{signature}")


def test_token_of_another_pool_is_refused(api_client, alice_token):
    with override_settings(
        COGNITO_ISSUER="https://cognito-idp.us-east-1.amazonaws.com/us-east-1_other"
    ):
        _assert_refused(api_client, alice_token)


def test_token_of_another_app_client_is_refused(api_client, alice_token):
    with override_settings(COGNITO_APP_CLIENT_ID="another-client"):
        _assert_refused(api_client, alice_token)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"exp": int(time.time()) - 31, "iat": int(time.time()) - 3600}, id="expired"),
        pytest.param({"iat": int(time.time()) + 600}, id="issued-in-future"),
        pytest.param({"token_use": "access"}, id="access-token-use"),
        pytest.param({"email": None}, id="no-email"),
        pytest.param({"email": "not-an-address"}, id="malformed-email"),
        pytest.param({"exp": None}, id="no-exp"),
    ],
)
def test_each_claim_is_checked(api_client, trusted_test_key, overrides):
    refused = sign(id_claims(**overrides), trusted_test_key, kid="test-key")
    _assert_refused(api_client, refused)
    # The same token with good claims passes: the refusal was the claim's doing.
    good = sign(id_claims(), trusted_test_key, kid="test-key")
    assert _place(api_client, good).status_code == 201


def test_email_verified_false_is_refused_when_required(api_client, trusted_test_key):
    attacker_key = trusted_test_key
    with override_settings(COGNITO_REQUIRE_EMAIL_VERIFIED=True):
        _assert_refused(
            api_client, sign(id_claims(email_verified=False), attacker_key, kid="test-key")
        )
        _assert_refused(
            api_client, sign(id_claims(email_verified=None), attacker_key, kid="test-key")
        )


def test_garbage_tokens_are_refused(api_client):
    for token in ["x", "a.b.c", "Bearer", "é"]:
        _assert_refused(api_client, token)


def test_jwks_is_fetched_once_across_many_requests(api_client, alice_token):
    for _ in range(10):
        assert api_client.get("/api/orders/", **auth(alice_token)).status_code == 200
    assert cognito.key_set().fetch_count == 1


def test_unknown_kids_refetch_at_most_once_a_minute(api_client, attacker_key, alice_token):
    assert api_client.get("/api/orders/", **auth(alice_token)).status_code == 200
    for n in range(20):
        token = sign(id_claims(), attacker_key, kid=f"junk-{n}")
        assert api_client.get("/api/orders/", **auth(token)).status_code == 401
    assert cognito.key_set().fetch_count == 1


def test_jwks_unreachable_without_cached_key_is_503(alice_token):
    # A 5xx is reported through got_request_exception, which the test client re-raises.
    client = APIClient(raise_request_exception=False)
    with override_settings(COGNITO_JWKS_URL="http://127.0.0.1:9/jwks.json"):
        response = client.get("/api/orders/", **auth(alice_token))
    assert response.status_code == 503
    assert response.json()["errors"][0]["code"] == "service_unavailable"


def test_body_cannot_override_customer(api_client, alice_token):
    body = order_body(("AUTH-1", 1))
    body.update({"customer_id": "someone-else", "customer_email": "evil@example.com"})
    response = api_client.post("/api/orders/", body, format="json", **auth(alice_token))
    assert response.status_code == 201
    assert Order.objects.get().customer_email == "alice@example.com"
    assert Order.objects.get().customer_id != "someone-else"


def test_cached_keys_survive_a_jwks_outage(api_client, alice_token, attacker_key):
    """The JWKS endpoint goes away after the first fetch: tokens keep working."""
    import http.server
    import threading

    jwks = urllib.request.urlopen(settings.COGNITO_JWKS_URL, timeout=5).read()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/jwks.json"
    with override_settings(COGNITO_JWKS_URL=url):
        assert api_client.get("/api/orders/", **auth(alice_token)).status_code == 200
        server.shutdown()
        server.server_close()
        for _ in range(3):
            assert api_client.get("/api/orders/", **auth(alice_token)).status_code == 200
        # An unknown kid during the outage is a bad token (401), not an outage (503).
        junk = sign(id_claims(), attacker_key, kid="rotated-key")
        assert api_client.get("/api/orders/", **auth(junk)).status_code == 401
        assert cognito.key_set().fetch_count == 1


# --- the token is checked once per process, not on every request ----------------------------


def _decodes(monkeypatch) -> list[str]:
    """Every full signature-and-claims check of a token from here on."""
    calls: list[str] = []
    decode = cognito.jwt.decode

    def counted(token, *args, **kwargs):
        calls.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(cognito.jwt, "decode", counted)
    return calls


def test_a_token_that_passed_is_not_checked_again(trusted_test_key, monkeypatch):
    token = sign(id_claims(), trusted_test_key, kid="test-key")
    decodes = _decodes(monkeypatch)

    first = cognito.id_token_verify(token=token)
    again = [cognito.id_token_verify(token=token) for _ in range(3)]

    assert again == [first] * 3
    assert decodes == [token]


def test_a_remembered_token_is_checked_again_once_it_expires(trusted_test_key, monkeypatch):
    claims = id_claims()
    token = sign(claims, trusted_test_key, kid="test-key")
    cognito.id_token_verify(token=token)
    decodes = _decodes(monkeypatch)

    monkeypatch.setattr(cognito.time, "time", lambda: claims["exp"] + 29.0)
    cognito.id_token_verify(token=token)  # within the 30 s leeway: still remembered
    assert decodes == []
    monkeypatch.setattr(cognito.time, "time", lambda: claims["exp"] + 31.0)
    cognito.id_token_verify(token=token)  # (PyJWT's own clock still finds it valid)
    assert decodes == [token]  # expired for the memory: checked in full again


def test_a_remembered_token_is_checked_against_the_current_settings(trusted_test_key, settings):
    settings.COGNITO_REQUIRE_EMAIL_VERIFIED = False
    token = sign(id_claims(email_verified=None), trusted_test_key, kid="test-key")
    cognito.id_token_verify(token=token)

    settings.COGNITO_REQUIRE_EMAIL_VERIFIED = True
    with pytest.raises(cognito.InvalidToken, match="not verified"):
        cognito.id_token_verify(token=token)


def test_a_refused_token_is_not_remembered(trusted_test_key, monkeypatch):
    token = sign(id_claims(token_use="access"), trusted_test_key, kid="test-key")
    decodes = _decodes(monkeypatch)
    for _ in range(2):
        with pytest.raises(cognito.InvalidToken):
            cognito.id_token_verify(token=token)
    assert decodes == [token, token]


@pytest.fixture
def three_tokens_kept(monkeypatch):
    """Key sets made from here on remember three verified tokens (the bound is the cache's
    size, fixed when the key set is made: before ``trusted_test_key`` makes it)."""
    monkeypatch.setattr(cognito, "VERIFIED_TOKENS_KEPT", 3)


@pytest.mark.usefixtures("three_tokens_kept")
def test_remembered_tokens_are_bounded(trusted_test_key, monkeypatch):
    tokens = [sign(id_claims(), trusted_test_key, kid="test-key") for _ in range(5)]
    for token in tokens:
        cognito.id_token_verify(token=token)
    decodes = _decodes(monkeypatch)

    for token in tokens[2:]:  # the newest three are remembered
        cognito.id_token_verify(token=token)
    assert decodes == []
    cognito.id_token_verify(token=tokens[0])  # the oldest was forgotten
    assert decodes == [tokens[0]]
    assert len(cognito.key_set()._verified) == 3

"""The key set is a neighbour that can misbehave: a JWKS URL that answers HTML, garbage, a key
set without usable keys, a 5xx, a redirect, too much, too slowly or not at all is the
documented 503 without cached keys and changes nothing with them; a refetch replaces the
set, so a retired key stops verifying, and stays at most one a minute.

The key server is played by a loopback HTTP server of the test, whose behaviour the test
switches; the web process is a real gunicorn pointed at it (COGNITO_JWKS_URL).
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager, suppress

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from shop.aws import cognito
from tests.helpers import auth, emulator_token, id_claims, sign
from tests.pipeline import WebServer, wait_for

#: What a misbehaving key server can answer, besides the real key set ("good").
BAD_ANSWERS = [
    "html",  # an error page of a proxy or load balancer
    "garbage",  # not JSON at all
    "not-a-key-set",  # JSON, but not a JWKS
    "no-keys",  # a JWKS with no key
    "unusable-keys",  # keys of the wrong type, algorithm or use, or that cannot be loaded
    "server-error",  # a 503 of Cognito's
    "redirect",  # to the real key set: a trusted URL must not hand the fetch on
    "huge",  # a body that never ends (well, 1 MiB)
    "trickle",  # a byte at a time: each read is quick, the answer never finishes
    "hang",  # accepts, reads the request, never answers
]


class KeyServer:
    """A JWKS URL on 127.0.0.1 that answers as ``mode`` says; counts what it was asked."""

    def __init__(self, good: bytes) -> None:
        self.good = good
        self.mode = "good"
        self.requests = 0
        self.released = threading.Event()
        key_server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                key_server.requests += 1
                key_server.answer(self)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        mode = self.mode

        def send(status: int, body: bytes, content_type: str = "application/json") -> None:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)

        if mode == "good":
            send(200, self.good)
        elif mode == "html":
            send(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        elif mode == "garbage":
            send(200, b"\x00\xff{not json")
        elif mode == "not-a-key-set":
            send(200, b'{"keys": "none", "kid": "dummy"}')
        elif mode == "no-keys":
            send(200, b'{"keys": []}')
        elif mode == "unusable-keys":
            good = json.loads(self.good)["keys"][0]
            keys = [
                {**good, "kty": "EC"},
                {**good, "alg": "HS256"},
                {**good, "use": "enc"},
                {**good, "n": "!!!not-base64!!!"},
                {**good, "kid": ""},
                "not an object",
            ]
            send(200, json.dumps({"keys": keys}).encode())
        elif mode == "server-error":
            send(503, b'{"message": "Service Unavailable"}')
        elif mode == "redirect":
            handler.send_response(302)
            handler.send_header("Location", self.url.replace("/jwks.json", "/moved.json"))
            handler.end_headers()
        elif mode == "huge":
            send(200, b'{"keys": [' + b" " * (1024 * 1024) + b"]}")
        elif mode == "trickle":
            handler.send_response(200)
            handler.send_header("Content-Length", "100000")
            handler.end_headers()
            for _ in range(100):  # 10 s in all, each byte 0.1 s after the last
                if self.released.wait(0.1):
                    return
                handler.wfile.write(b" ")
                handler.wfile.flush()
        elif mode == "hang":
            self.released.wait(30)

    def close(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def emulator_jwks() -> bytes:
    with urllib.request.urlopen(settings.COGNITO_JWKS_URL, timeout=5) as response:
        return response.read()


@pytest.fixture
def key_server(emulator_jwks):
    server = KeyServer(emulator_jwks)
    yield server
    server.close()


@contextmanager
def unanswered_port():
    """A port whose listen queue is full: a connection attempt hangs (the connect timeout)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield f"http://127.0.0.1:{port}/jwks.json"
    finally:
        for sock in [*fillers, listener]:
            sock.close()


def _me(server: WebServer, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{server.url}/api/me/", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _assert_unavailable(answer: tuple[int, dict], what: str) -> None:
    status, data = answer
    assert status == 503, (what, status, data)
    assert data["type"] == "server_error"
    assert data["errors"][0]["code"] == "service_unavailable", data


# --- a real web process -----------------------------------------------------------------------


@pytest.mark.subprocess
@pytest.mark.django_db
def test_a_misbehaving_key_server_is_a_503_without_cached_keys_and_harmless_with_them(
    tmp_path, key_server, attacker_key
):
    token = emulator_token()
    junk = sign(id_claims(), attacker_key, kid="not-a-pool-key")
    with unanswered_port() as silent_url:
        # Refetches are not spaced here, so each request below really asks the key server.
        env = {"COGNITO_JWKS_URL": key_server.url, "COGNITO_JWKS_MIN_REFETCH_SECONDS": "0"}
        web = WebServer(tmp_path / "web.log", env).start()
        silent = WebServer(tmp_path / "silent.log", {**env, "COGNITO_JWKS_URL": silent_url})
        silent.start()
        try:
            # No key cached yet: every kind of bad answer is the documented 503.
            for mode in BAD_ANSWERS:
                key_server.mode = mode
                asked = key_server.requests
                _assert_unavailable(_me(web, token), mode)
                assert key_server.requests == asked + 1, mode  # it really asked
            # (A refused connection: test_authentication's closed port.)
            _assert_unavailable(_me(silent, token), "connect timeout")

            # The key set comes back: tokens work, and the set is cached.
            key_server.mode = "good"
            assert _me(web, token)[0] == 200
            fetched = key_server.requests

            # Keys cached: the same bad answers change nothing for tokens of a known key...
            for mode in BAD_ANSWERS:
                key_server.mode = mode
                assert _me(web, token)[0] == 200, mode
                assert _me(web, emulator_token())[0] == 200, mode  # a new token, same key
                assert key_server.requests == fetched, mode  # no fetch needed
                # ...and an unknown kid makes the fetch fail (quietly): a 401, not a 503.
                status, data = _me(web, junk)
                assert status == 401, (mode, data)
                assert _me(web, token)[0] == 200, mode  # the failed fetch kept the keys
                fetched = key_server.requests
        finally:
            web.stop()
            silent.stop()
    for log in (web.text(), silent.text()):
        assert '" 500 ' not in log and "Traceback" not in log
    assert "is unavailable" in web.text()  # each failed fetch says why, once


# --- in this process ----------------------------------------------------------------------------


def _jwk(key: rsa.RSAPrivateKey, kid: str) -> dict:
    return {
        **json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())),
        "kid": kid,
        "alg": "RS256",
        "use": "sig",
    }


@pytest.fixture(scope="module")
def pool_keys() -> dict[str, rsa.RSAPrivateKey]:
    return {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in "AB"}


@pytest.fixture
def rotating(key_server, pool_keys, settings, monkeypatch):
    """The pool's key set is whatever ``publish`` last said; the clock is the test's."""
    settings.COGNITO_JWKS_URL = key_server.url
    clock = [1000.0]
    monkeypatch.setattr(cognito.time, "monotonic", lambda: clock[0])

    def publish(*kids: str) -> None:
        key_server.good = json.dumps({"keys": [_jwk(pool_keys[k], k) for k in kids]}).encode()
        key_server.mode = "good"

    def advance(seconds: float) -> None:
        clock[0] += seconds

    def token(kid: str) -> str:
        return sign(id_claims(), pool_keys[kid], kid=kid)

    return publish, advance, token


def _verifies(token: str) -> bool:
    try:
        cognito.id_token_verify(token=token)
    except cognito.InvalidToken:
        return False
    return True


def test_a_retired_key_stops_verifying_once_the_set_is_fetched_again(rotating):
    publish, advance, token = rotating
    publish("A")
    token_a = token("A")
    assert _verifies(token_a)
    keys = cognito.key_set()
    assert keys.fetch_count == 1

    publish("B")  # Cognito rotates: A retired, B signs new tokens
    token_b = token("B")
    assert not _verifies(token_b)  # unknown kid, but a fetch was just made: at most one a minute
    assert _verifies(token_a)  # the old set still stands
    assert keys.fetch_count == 1

    advance(61)
    assert _verifies(token_b)  # the refetch replaced the set...
    assert keys.fetch_count == 2
    assert not _verifies(token_a)  # ...so A's token, though remembered as verified, is not
    advance(61)
    assert not _verifies(token_a)  # and a later fetch does not bring it back
    assert keys.fetch_count == 3


def test_a_key_retired_while_its_tokens_are_remembered_is_forgotten_after_the_max_age(
    rotating, settings
):
    """Both keys published, tokens of both remembered; A is retired while no token needs a
    new key: the set is fetched again once it is older than the maximum age."""
    publish, advance, token = rotating
    publish("A", "B")
    token_a, token_b = token("A"), token("B")
    assert _verifies(token_a) and _verifies(token_b)
    keys = cognito.key_set()
    assert keys.fetch_count == 1

    publish("B")
    advance(settings.COGNITO_JWKS_MAX_AGE_SECONDS - 1)
    assert _verifies(token_a)  # not stale yet: remembered
    advance(2)
    assert not _verifies(token_a)  # stale: fetched again, A gone, its token forgotten
    assert _verifies(token_b)
    assert keys.fetch_count == 2


def test_a_failed_refresh_keeps_the_keys(rotating, key_server, settings):
    publish, advance, token = rotating
    publish("A")
    token_a = token("A")
    assert _verifies(token_a)
    key_server.mode = "server-error"
    advance(settings.COGNITO_JWKS_MAX_AGE_SECONDS + 1)
    assert _verifies(token_a)  # the refresh failed: the old set stands
    assert _verifies(token("A"))
    assert cognito.key_set().fetch_count == 2


@pytest.mark.django_db
def test_a_retired_key_is_a_401_through_the_api(rotating, api_client):
    publish, advance, token = rotating
    publish("A")
    token_a = token("A")
    assert api_client.get("/api/me/", **auth(token_a)).status_code == 200
    publish("B")
    advance(61)
    assert api_client.get("/api/me/", **auth(token("B"))).status_code == 200
    response = api_client.get("/api/me/", **auth(token_a))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_a_hanging_key_server_is_given_up_at_the_read_timeout(key_server, settings):
    settings.COGNITO_JWKS_URL = key_server.url
    key_server.mode = "hang"
    # "timed out": the read timeout ended it, not the server (which would hang up after 30 s).
    with pytest.raises(cognito.KeysUnavailable, match="timed out"):
        cognito.key_set().signing_key("dummy")
    wait_for(lambda: key_server.requests == 1, timeout=5, what="the request")


def test_a_trickling_key_server_is_cut_off(key_server, settings):
    settings.COGNITO_JWKS_URL = key_server.url
    key_server.mode = "trickle"  # every read returns a byte within the read timeout
    with pytest.raises(cognito.KeysUnavailable, match="took longer than"):
        cognito.key_set().signing_key("dummy")


# --- any document at all ------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
KEY_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "kty": st.sampled_from(["RSA", "EC", "oct", ""]) | JSON,
        "kid": st.text(max_size=8) | JSON,
        "alg": st.sampled_from(["RS256", "HS256", "none"]) | JSON,
        "use": st.sampled_from(["sig", "enc"]) | JSON,
        "n": st.sampled_from(["AQAB", "", "!!", "0" * 700]) | st.text(max_size=30) | JSON,
        "e": st.sampled_from(["AQAB", "", "AA"]) | JSON,
    },
)
DOCUMENTS = st.one_of(
    JSON.map(lambda doc: json.dumps(doc).encode()),
    st.lists(KEY_FIELDS | JSON, max_size=4).map(lambda keys: json.dumps({"keys": keys}).encode()),
    st.binary(max_size=64),
)


@given(body=DOCUMENTS)
@hypothesis_settings(max_examples=300, derandomize=True, database=None, deadline=None)
def test_any_answer_is_a_key_set_or_a_clean_refusal(body):
    try:
        keys = cognito.jwks_parse(body)
    except ValueError:
        return
    assert keys and all(isinstance(kid, str) and kid for kid in keys)
    assert all(key.key_type == "RSA" for key in keys.values())

"""Amazon Cognito ID tokens: the key set (JWKS) and the checks every token must pass.

The only module that talks to Cognito. Keys are kept for the life of the process; a token
signed with an unknown ``kid`` triggers at most one refetch per
``COGNITO_JWKS_MIN_REFETCH_SECONDS`` per key-set URL, so a stream of junk tokens cannot
hammer Cognito, and a brief JWKS outage does not matter while keys are cached.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import jwt
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from jwt import PyJWK, PyJWKClient, PyJWKClientError

from shop import aws
from shop.metrics import JWKS_FETCHES


class InvalidToken(Exception):
    """The token is not an acceptable ID token of our pool and app client."""


class KeysUnavailable(Exception):
    """The JWKS endpoint could not be read and no key is cached for the token's kid."""


#: Verified tokens a process remembers (about 1 KB each), so that it checks a customer's
#: token once, not on every request (a signature check and every claim cost more than the
#: rest of a small API request: bench/http_bench.py).
VERIFIED_TOKENS_KEPT = 4096


@dataclass(frozen=True)
class IdentityClaims:
    customer_id: str
    email: str


class KeySet:
    """The signing keys of one JWKS URL, fetched lazily and refetched sparingly."""

    def __init__(self, url: str, *, min_refetch_seconds: float, timeout: float) -> None:
        self.url = url
        self.min_refetch_seconds = min_refetch_seconds
        self.fetch_count = 0
        self._client = PyJWKClient(url, cache_jwk_set=False, cache_keys=False, timeout=timeout)
        self._keys: dict[str, PyJWK] = {}
        self._last_attempt: float | None = None
        self._lock = threading.Lock()
        # Tokens that passed every check, with whom they name and their `exp`: a customer
        # sends the same ID token with each request for up to an hour.
        self._verified: dict[tuple, tuple[IdentityClaims, float]] = {}

    def verified(self, check: tuple, *, leeway: float) -> IdentityClaims | None:
        """Claims of a token that passed the same ``check`` before and has not expired since."""
        found = self._verified.get(check)
        if found is None or time.time() >= found[1] + leeway:
            return None
        return found[0]

    def verified_remember(self, check: tuple, claims: IdentityClaims, *, exp: float) -> None:
        with self._lock:
            if len(self._verified) >= VERIFIED_TOKENS_KEPT:
                self._verified.pop(next(iter(self._verified)))  # the oldest
            self._verified[check] = (claims, exp)

    def signing_key(self, kid: str) -> PyJWK:
        with self._lock:
            key = self._keys.get(kid)
            if key is not None:
                return key
            now = time.monotonic()
            recently = (
                self._last_attempt is not None
                and now - self._last_attempt < self.min_refetch_seconds
            )
            if recently:
                if self._keys:
                    raise InvalidToken("token signed with an unknown key")
                raise KeysUnavailable("the token signing keys could not be fetched recently")
            self._last_attempt = now
            self.fetch_count += 1
            JWKS_FETCHES.inc()
            try:
                jwk_set = self._client.get_jwk_set()
            except PyJWKClientError as exc:
                if self._keys:
                    raise InvalidToken("token signed with an unknown key") from exc
                raise KeysUnavailable(str(exc)) from exc
            self._keys.update(
                {k.key_id: k for k in jwk_set.keys if k.key_id and k.key_type == "RSA"}
            )
            key = self._keys.get(kid)
            if key is None:
                raise InvalidToken("token signed with an unknown key")
            return key


_key_sets: dict[str, KeySet] = {}
_key_sets_lock = threading.Lock()


def key_set() -> KeySet:
    """The process-wide key set for the configured JWKS URL (keyed on it, so tests can move)."""
    url = settings.COGNITO_JWKS_URL
    with _key_sets_lock:
        if url not in _key_sets:
            _key_sets[url] = KeySet(
                url,
                min_refetch_seconds=settings.COGNITO_JWKS_MIN_REFETCH_SECONDS,
                timeout=settings.COGNITO_JWKS_TIMEOUT_SECONDS,
            )
        return _key_sets[url]


def id_token_verify(*, token: str) -> IdentityClaims:
    """Check every claim of a Cognito ID token and return who it names.

    RS256 only, a key of the pool's JWKS, ``iss`` the pool's issuer, ``aud`` our app client,
    ``token_use == "id"``, ``exp`` in the future and ``iat`` not in it (leeway at most 30 s),
    ``email`` present and well-formed and, unless disabled, ``email_verified`` true.
    A token that passed is remembered by the key set until it expires (``exp`` plus the
    leeway): the same token again is a lookup, not a second signature check.
    """
    if not settings.COGNITO_USER_POOL_ID or not settings.COGNITO_APP_CLIENT_ID:
        raise KeysUnavailable("Cognito is not configured (COGNITO_USER_POOL_ID/APP_CLIENT_ID)")
    keys = key_set()
    leeway = min(settings.COGNITO_LEEWAY_SECONDS, 30)
    check = (
        token,
        settings.COGNITO_ISSUER,
        settings.COGNITO_APP_CLIENT_ID,
        settings.COGNITO_REQUIRE_EMAIL_VERIFIED,
    )
    known = keys.verified(check, leeway=leeway)
    if known is not None:
        return known
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidToken("malformed token") from exc
    if header.get("alg") != "RS256":
        raise InvalidToken("token algorithm must be RS256")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("token has no key id")
    key = keys.signing_key(kid)
    try:
        claims = jwt.decode(
            token,
            key=key.key,
            algorithms=["RS256"],
            audience=settings.COGNITO_APP_CLIENT_ID,
            issuer=settings.COGNITO_ISSUER,
            leeway=leeway,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "token_use"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    if claims.get("token_use") != "id":
        raise InvalidToken("only ID tokens are accepted")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 128:
        raise InvalidToken("token has no valid subject")
    email = claims.get("email")
    if not isinstance(email, str) or len(email) > 254:
        raise InvalidToken("token has no valid email")
    try:
        validate_email(email)
    except ValidationError as exc:
        raise InvalidToken("token has no valid email") from exc
    if settings.COGNITO_REQUIRE_EMAIL_VERIFIED and claims.get("email_verified") not in (
        True,
        "true",
    ):
        raise InvalidToken("token's email is not verified")
    identity = IdentityClaims(customer_id=subject, email=email)
    keys.verified_remember(check, identity, exp=float(claims["exp"]))
    return identity


class SignInFailed(Exception):
    pass


def id_token_obtain(*, email: str, password: str) -> str:
    """Sign a user in with USER_PASSWORD_AUTH and return the ID token (development, tests)."""
    try:
        response = aws.client("cognito-idp").initiate_auth(
            ClientId=settings.COGNITO_APP_CLIENT_ID,
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": email, "PASSWORD": password},
        )
    except (ClientError, BotoCoreError) as exc:
        raise SignInFailed(str(exc)) from exc
    return response["AuthenticationResult"]["IdToken"]

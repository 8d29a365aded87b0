"""Amazon Cognito ID tokens: the key set (JWKS) and the checks every token must pass.

The only module that talks to Cognito. The key set is a neighbour that can misbehave, so:

- it is fetched within ``shop.aws.fetch``'s bounds (1 s to connect, 2 s to read, 256 KiB), and
  an answer that is not a usable key set (a 5xx, HTML, JSON without RSA signing keys, a hang)
  is a failed fetch: without a key for the token's ``kid`` that is ``KeysUnavailable`` (the
  API's documented 503), with one it changes nothing (cached keys keep working);
- a token signed with an unknown ``kid`` triggers at most one fetch per
  ``COGNITO_JWKS_MIN_REFETCH_SECONDS`` (per key-set URL), so a stream of junk tokens cannot
  hammer Cognito;
- a successful fetch *replaces* the key set: a key Cognito has retired stops verifying, and
  tokens remembered as verified with it are forgotten. The set is also fetched again once it
  is older than ``COGNITO_JWKS_MAX_AGE_SECONDS`` (same once-a-minute bound; a failure keeps
  the old set), so a retired key cannot live on in a long-running process.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

import jwt
from botocore.exceptions import BotoCoreError, ClientError
from cachetools import LRUCache, TLRUCache, cached
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from jwt import PyJWK

from shop import aws
from shop.aws.fetch import FetchFailed, bounded_get
from shop.observability.metrics import JWKS_FETCHES

logger = logging.getLogger(__name__)


class InvalidToken(Exception):
    """The token is not an acceptable ID token of our pool and app client."""


class KeysUnavailable(Exception):
    """The JWKS endpoint could not be read and no key is cached for the token's kid."""


#: Verified tokens a process remembers (about 1 KB each), so that it checks a customer's
#: token once, not on every request (a signature check and every claim cost more than the
#: rest of a small API request: bench/http_bench.py).
VERIFIED_TOKENS_KEPT = 4096
#: A key set is a few keys of about 500 bytes each; more than this is not Cognito's.
JWKS_MAX_BYTES = 256 * 1024
JWKS_MAX_KEYS = 100


@dataclass(frozen=True)
class IdentityClaims:
    customer_id: str
    email: str


def _wall_clock() -> float:
    return time.time()  # looked up at each call: tests move the clock


def _verified_until(check: tuple, value: tuple[IdentityClaims, float, str], now: float) -> float:
    return value[1]


def jwks_parse(body: bytes) -> dict[str, PyJWK]:
    """The RSA signing keys of a JWKS document, by ``kid``; raises ValueError when there is
    none (not JSON, not a key set, no usable key). Keys that are not RS256 signing keys, or
    that PyJWT cannot load, are skipped."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError("the answer is not JSON") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError("the answer is not a JSON Web Key Set")
    keys: dict[str, PyJWK] = {}
    for entry in entries[:JWKS_MAX_KEYS]:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        usable = (
            isinstance(kid, str)
            and kid
            and entry.get("kty") == "RSA"
            and entry.get("alg", "RS256") == "RS256"
            and entry.get("use", "sig") == "sig"
        )
        if not usable:
            continue
        try:
            keys[kid] = PyJWK.from_dict({**entry, "alg": "RS256"})
        except (jwt.PyJWTError, ValueError, TypeError, KeyError, AttributeError):
            continue  # a malformed key (bad modulus, ...) is not one we can use
    if not keys:
        raise ValueError("the key set has no usable RS256 signing key")
    return keys


class KeySet:
    """The signing keys of one JWKS URL, fetched lazily and refetched sparingly."""

    def __init__(self, url: str, *, min_refetch_seconds: float, max_age_seconds: float) -> None:
        self.url = url
        self.min_refetch_seconds = min_refetch_seconds
        self.max_age_seconds = max_age_seconds
        self.fetch_count = 0
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None  # the last fetch that replaced the set
        self._last_attempt: float | None = None
        self._lock = threading.Lock()
        # Tokens that passed every check, with whom they name, until when they are good (their
        # `exp` plus the leeway: the TLRUCache forgets them then, on the wall clock as `exp`)
        # and the kid of the key that verified them: a customer sends the same ID token for up
        # to an hour. Past VERIFIED_TOKENS_KEPT the least recently used is forgotten.
        self._verified: TLRUCache = TLRUCache(
            maxsize=VERIFIED_TOKENS_KEPT, ttu=_verified_until, timer=_wall_clock
        )
        self._verified_lock = threading.Lock()  # not self._lock: a fetch holds that one

    def verified(self, check: tuple) -> IdentityClaims | None:
        """Claims of a token that passed the same ``check`` before and has not expired since
        (and whose key is still in the set)."""
        self._refresh_if_stale()
        with self._verified_lock:
            found = self._verified.get(check)
        return None if found is None else found[0]

    def verified_remember(
        self, check: tuple, claims: IdentityClaims, *, until: float, kid: str
    ) -> None:
        with self._lock, self._verified_lock:
            if kid not in self._keys:
                return  # the set was replaced meanwhile without this key
            self._verified[check] = (claims, until, kid)

    def signing_key(self, kid: str) -> PyJWK:
        with self._lock:
            key = self._keys.get(kid)
            if key is not None:
                return key
            if not self._may_fetch():
                if self._keys:
                    raise InvalidToken("token signed with an unknown key")
                raise KeysUnavailable("the token signing keys could not be fetched recently")
            problem = self._fetch()
            if problem and not self._keys:
                raise KeysUnavailable(problem)
            key = self._keys.get(kid)
            if key is None:
                raise InvalidToken("token signed with an unknown key")
            return key

    def _refresh_if_stale(self) -> None:
        fetched_at = self._fetched_at
        if fetched_at is None or time.monotonic() - fetched_at < self.max_age_seconds:
            return
        with self._lock:
            if self._fetched_at == fetched_at and self._may_fetch():
                self._fetch()  # a failure keeps the old keys

    def _may_fetch(self) -> bool:
        """At most one fetch per ``min_refetch_seconds``; claims the slot when it is free."""
        now = time.monotonic()
        if self._last_attempt is not None and now - self._last_attempt < self.min_refetch_seconds:
            return False
        self._last_attempt = now
        return True

    def _fetch(self) -> str | None:
        """Fetch and, if usable, replace the set (under the lock); the problem, or None."""
        self.fetch_count += 1
        JWKS_FETCHES.inc()
        try:
            answer = bounded_get(self.url, max_bytes=JWKS_MAX_BYTES, accept="application/json")
            if answer.status != 200:
                raise ValueError(f"the key set URL answered HTTP {answer.status}")
            keys = jwks_parse(answer.body)
        except (FetchFailed, ValueError) as exc:
            problem = f"Cognito's key set at {self.url} is unavailable: {exc}"
            kept = f" (keeping the {len(self._keys)} cached keys)" if self._keys else ""
            logger.warning("%s%s", problem, kept)
            return problem
        retired = set(self._keys) - set(keys)
        self._keys = keys
        self._fetched_at = time.monotonic()
        if retired:
            with self._verified_lock, self._verified.timer:
                for check in [c for c, v in self._verified.items() if v[2] not in keys]:
                    self._verified.pop(check, None)
            logger.info("Cognito retired signing keys %s", ", ".join(sorted(retired)))
        return None


def key_set() -> KeySet:
    """The process-wide key set for the configured JWKS URL (keyed on it, so tests can move)."""
    return _key_set_for(settings.COGNITO_JWKS_URL)


@cached(LRUCache(maxsize=8), lock=threading.Lock())
def _key_set_for(url: str) -> KeySet:
    return KeySet(
        url,
        min_refetch_seconds=settings.COGNITO_JWKS_MIN_REFETCH_SECONDS,
        max_age_seconds=settings.COGNITO_JWKS_MAX_AGE_SECONDS,
    )


def key_sets_clear() -> None:
    """Forget every key set and the tokens it verified, as a new process would (tests)."""
    _key_set_for.cache_clear()


def id_token_verify(*, token: str) -> IdentityClaims:
    """Check every claim of a Cognito ID token and return who it names.

    RS256 only, a key of the pool's JWKS, ``iss`` the pool's issuer, ``aud`` our app client,
    ``token_use == "id"``, ``exp`` in the future and ``iat`` not in it (leeway at most 30 s),
    ``email`` present and well-formed and, unless disabled, ``email_verified`` true.
    A token that passed is remembered by the key set until it expires (``exp`` plus the
    leeway) or its key leaves the set: the same token again is a lookup, not a second
    signature check.
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
        leeway,
    )
    known = keys.verified(check)
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
    keys.verified_remember(check, identity, until=float(claims["exp"]) + leeway, kid=kid)
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

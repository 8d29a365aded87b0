"""Amazon SES: the sandbox rule and sending, through django-ses. The only module that talks to SES.

In the SES sandbox only verified recipients may receive mail. Real SES enforces this with
``MessageRejected``; the emulator does not, so the worker asks SES itself
(GetIdentityVerificationAttributes for the address and its domain only, never a listing)
and treats "not verified" exactly like SES's own refusal.
"""

from __future__ import annotations

import logging
import threading

from botocore.exceptions import BotoCoreError, ClientError
from cachetools import LRUCache, TTLCache, cached
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.utils.module_loading import import_string
from django_ses import SESBackend

from shop import aws

logger = logging.getLogger(__name__)

#: How long a "verified" answer about a recipient is reused. "Not verified" is never cached,
#: so an address verified by an operator works on the very next attempt (a redrive, say).
VERIFICATION_CACHE_SECONDS = 60
#: How long the answer to "is the account sandboxed?" (auto mode) is reused.
SANDBOX_CACHE_SECONDS = 300


class SendRefused(Exception):
    """SES (or the sandbox rule) refused this email. SQS retries; the DLQ ends it."""


class SesUnavailable(Exception):
    """SES could not be reached or answered with an error. SQS retries."""


class SendThrottled(Exception):
    """SES answered ``Throttling`` (above the account's send rate): it did not take the
    email, so the caller may send again after its next send slot."""


#: SES's error codes for "above the maximum send rate": v1 (Query API) and v2.
THROTTLING_CODES = {"Throttling", "TooManyRequestsException"}
#: How long the account's MaxSendRate (GetSendQuota) is reused.
QUOTA_CACHE_SECONDS = 300
#: The rate assumed when SES cannot tell: the sandbox's.
FALLBACK_SEND_RATE = 1.0


#: Answers SES gave, each kept for its age above (cachetools' TTLCache), keyed on the endpoint
#: and region so that tests that move SES get fresh answers. One lock for all three.
_lock = threading.Lock()
_sandboxed: TTLCache = TTLCache(maxsize=16, ttl=SANDBOX_CACHE_SECONDS)
_send_rates: TTLCache = TTLCache(maxsize=16, ttl=QUOTA_CACHE_SECONDS)
#: Only "verified" answers are kept (see VERIFICATION_CACHE_SECONDS), one per address.
_verified: TTLCache = TTLCache(maxsize=4096, ttl=VERIFICATION_CACHE_SECONDS)
#: django-ses backends, one per (backend, endpoint, region, API version).
_backends: LRUCache = LRUCache(maxsize=16)


def cache_clear() -> None:
    """Forget every answer SES gave and the mail backends (tests; a process never needs to)."""
    with _lock:
        for cache in (_sandboxed, _send_rates, _verified, _backends):
            cache.clear()


def account_sandboxed() -> bool:
    """``SES_SANDBOX``: true/false as set; ``auto`` asks SES, and says yes when SES cannot say."""
    if settings.SES_SANDBOX in ("true", "false"):
        return settings.SES_SANDBOX == "true"

    return _account_sandboxed_ask(settings.AWS_SES_ENDPOINT_URL, settings.AWS_REGION)


@cached(_sandboxed, lock=_lock)
def _account_sandboxed_ask(endpoint_url: str, region: str) -> bool:
    """GetAccount's answer (the arguments are the cache key: ``aws.client`` follows them)."""
    try:
        account = aws.client("sesv2").get_account()
    except (ClientError, BotoCoreError) as exc:
        logger.info("SES cannot say whether the account is sandboxed (%s): assuming it is", exc)
        return True
    return not account.get("ProductionAccessEnabled", False)


def max_send_rate() -> float:
    """Sends per second allowed for the fleet: ``SES_MAX_SEND_RATE``, else the account's
    MaxSendRate from GetSendQuota (asked once per process every few minutes)."""
    if settings.SES_MAX_SEND_RATE:
        return settings.SES_MAX_SEND_RATE
    return _send_rate_ask(settings.AWS_SES_ENDPOINT_URL, settings.AWS_REGION)


@cached(_send_rates, lock=_lock)
def _send_rate_ask(endpoint_url: str, region: str) -> float:
    """GetSendQuota's MaxSendRate, or the fallback (the arguments are the cache key)."""
    try:
        rate = float(aws.client("ses").get_send_quota()["MaxSendRate"])
    except (ClientError, BotoCoreError, KeyError, TypeError, ValueError) as exc:
        logger.warning(
            "SES did not give its MaxSendRate (%s): pacing at %g/s", exc, FALLBACK_SEND_RATE
        )
        rate = FALLBACK_SEND_RATE
    return rate if rate > 0 else FALLBACK_SEND_RATE


def recipient_verified(*, address: str) -> bool:
    """Whether SES reports the address, or its domain, as a verified identity."""
    key = (settings.AWS_SES_ENDPOINT_URL, settings.AWS_REGION, address.lower())
    with _lock:
        if _verified.get(key):
            return True
    domain = address.rsplit("@", 1)[-1]
    try:
        response = aws.client("ses").get_identity_verification_attributes(
            Identities=[address, domain]
        )
    except (ClientError, BotoCoreError) as exc:
        raise SesUnavailable(f"could not ask SES about {address}: {exc}") from exc
    attributes = response.get("VerificationAttributes", {})
    verified = any(
        attributes.get(identity, {}).get("VerificationStatus") == "Success"
        for identity in (address, domain)
    )
    if verified:  # "not verified" is asked again next time
        with _lock:
            _verified[key] = True
    return verified


def identity_verify(*, address: str) -> None:
    """Ask SES to verify an address (VerifyEmailIdentity).

    On AWS, SES mails the address a link and it is verified once the link is followed; the
    emulator verifies it at once.
    """
    try:
        aws.client("ses").verify_email_identity(EmailAddress=address)
    except (ClientError, BotoCoreError) as exc:
        raise SesUnavailable(f"could not ask SES to verify {address}: {exc}") from exc


def _mail_backend():
    """One mail backend per process, not one per email. django-ses's is built with the
    single-attempt configuration of ``shop.aws`` (its ``aws_config`` argument), the region and
    the SES endpoint of the settings.

    Single attempt: botocore's standard mode would repeat SendRawEmail after a read timeout
    or a 5xx, and SES may have taken the first one: a second email. Each delivery of the
    queue message makes one send; SQS is the retry (and ``Throttling``, which says the email
    was not taken, is retried by the caller after the governor's next token).
    """
    return _mail_backend_for(
        settings.EMAIL_BACKEND,
        settings.AWS_SES_ENDPOINT_URL,
        settings.AWS_REGION,
        getattr(settings, "USE_SES_V2", False),
    )


@cached(_backends, lock=_lock)
def _mail_backend_for(backend: str, endpoint_url: str, region: str, use_v2: bool):
    if not issubclass(import_string(backend), SESBackend):
        return get_connection(backend)  # locmem in tests
    return get_connection(
        backend,
        aws_config=aws.client_config(single_attempt=True),
        aws_region_name=region,
        aws_region_endpoint=endpoint_url or None,
        use_ses_v2=use_v2,
    )


def mail_backend_open() -> None:
    """Build this process's mail backend and open its SES client now (django-ses's public
    ``open()``; a no-op once open), so that the first send of a process does not build a
    boto3 session and client between taking its send slot and reaching SES."""
    backend = _mail_backend()
    if isinstance(backend, SESBackend):
        backend.open()


def email_send(*, to: str, subject: str, html: str, text: str) -> str:
    """Send one email from DEFAULT_FROM_EMAIL; return SES's message id."""
    if account_sandboxed() and not recipient_verified(address=to):
        raise SendRefused("recipient not verified in the SES sandbox")
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
        connection=_mail_backend(),
    )
    message.attach_alternative(html, "text/html")
    try:
        message.send()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, text = error.get("Code"), error.get("Message", "")
        if code == "MessageRejected":
            raise SendRefused(f"SES MessageRejected: {text}") from exc
        # "Daily message quota exceeded." is a Throttling too, but no send slot ends it.
        if code in THROTTLING_CODES and "daily" not in text.lower():
            raise SendThrottled(f"SES {code}: {text}") from exc
        raise SesUnavailable(f"SES error {code}: {text}") from exc
    except BotoCoreError as exc:
        raise SesUnavailable(f"SES unreachable: {exc}") from exc
    return message.extra_headers.get("message_id", "")

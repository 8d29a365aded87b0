"""Amazon SES: the sandbox rule and sending, through django-ses. The only module that talks to SES.

In the SES sandbox only verified recipients may receive mail. Real SES enforces this with
``MessageRejected``; the emulator does not, so the worker asks SES itself
(GetIdentityVerificationAttributes for the address and its domain only, never a listing)
and treats "not verified" exactly like SES's own refusal.
"""

from __future__ import annotations

import logging
import threading
import time

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
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


_cache: dict[tuple, tuple[float, bool]] = {}
_cache_lock = threading.Lock()


def _cached(key: tuple, ttl: float, compute, *, keep_false: bool = True) -> bool:
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit and now - hit[0] < ttl:
            return hit[1]
    value = compute()
    if value or keep_false:
        with _cache_lock:
            _cache[key] = (now, value)
    return value


def cache_clear() -> None:
    with _cache_lock:
        _cache.clear()
        _quota.clear()


def account_sandboxed() -> bool:
    """``SES_SANDBOX``: true/false as set; ``auto`` asks SES, and says yes when SES cannot say."""
    if settings.SES_SANDBOX in ("true", "false"):
        return settings.SES_SANDBOX == "true"

    def ask() -> bool:
        try:
            account = aws.client("sesv2").get_account()
        except (ClientError, BotoCoreError) as exc:
            logger.info("SES cannot say whether the account is sandboxed (%s): assuming it is", exc)
            return True
        return not account.get("ProductionAccessEnabled", False)

    key = ("sandbox", settings.AWS_SES_ENDPOINT_URL, settings.AWS_REGION)
    return _cached(key, SANDBOX_CACHE_SECONDS, ask)


_quota: dict[tuple, tuple[float, float]] = {}


def max_send_rate() -> float:
    """Sends per second allowed for the fleet: ``SES_MAX_SEND_RATE``, else the account's
    MaxSendRate from GetSendQuota (asked once per process every few minutes)."""
    if settings.SES_MAX_SEND_RATE:
        return settings.SES_MAX_SEND_RATE
    key = (settings.AWS_SES_ENDPOINT_URL, settings.AWS_REGION)
    now = time.monotonic()
    with _cache_lock:
        hit = _quota.get(key)
        if hit and now - hit[0] < QUOTA_CACHE_SECONDS:
            return hit[1]
    try:
        rate = float(aws.client("ses").get_send_quota()["MaxSendRate"])
    except (ClientError, BotoCoreError, KeyError, TypeError, ValueError) as exc:
        logger.warning(
            "SES did not give its MaxSendRate (%s): pacing at %g/s", exc, FALLBACK_SEND_RATE
        )
        rate = FALLBACK_SEND_RATE
    rate = rate if rate > 0 else FALLBACK_SEND_RATE
    with _cache_lock:
        _quota[key] = (now, rate)
    return rate


def recipient_verified(*, address: str) -> bool:
    """Whether SES reports the address, or its domain, as a verified identity."""
    domain = address.rsplit("@", 1)[-1]

    def ask() -> bool:
        try:
            response = aws.client("ses").get_identity_verification_attributes(
                Identities=[address, domain]
            )
        except (ClientError, BotoCoreError) as exc:
            raise SesUnavailable(f"could not ask SES about {address}: {exc}") from exc
        attributes = response.get("VerificationAttributes", {})
        return any(
            attributes.get(identity, {}).get("VerificationStatus") == "Success"
            for identity in (address, domain)
        )

    key = ("verified", settings.AWS_SES_ENDPOINT_URL, settings.AWS_REGION, address.lower())
    return _cached(key, VERIFICATION_CACHE_SECONDS, ask, keep_false=False)


def identity_verify(*, address: str) -> None:
    """Ask SES to verify an address (VerifyEmailIdentity).

    On AWS, SES mails the address a link and it is verified once the link is followed; the
    emulator verifies it at once.
    """
    try:
        aws.client("ses").verify_email_identity(EmailAddress=address)
    except (ClientError, BotoCoreError) as exc:
        raise SesUnavailable(f"could not ask SES to verify {address}: {exc}") from exc


_backends: dict[tuple[str, str], object] = {}


def _mail_backend():
    """One django-ses backend per process, not one per email, sending with the process's
    single-attempt SES client from ``shop.aws`` instead of a second one of its own.

    Single attempt: botocore's standard mode would repeat SendRawEmail after a read timeout
    or a 5xx, and SES may have taken the first one: a second email. Each delivery of the
    queue message makes one send; SQS is the retry (and ``Throttling``, which says the email
    was not taken, is retried by the caller after the governor's next token).
    """
    key = (settings.EMAIL_BACKEND, settings.AWS_SES_ENDPOINT_URL)
    with _cache_lock:
        if key not in _backends:
            backend = get_connection(settings.EMAIL_BACKEND)
            if isinstance(backend, SESBackend):
                use_v2 = getattr(settings, "USE_SES_V2", False)
                backend.connection = aws.client("sesv2" if use_v2 else "ses", single_attempt=True)
            _backends[key] = backend
        return _backends[key]


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

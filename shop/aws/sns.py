"""Amazon SNS: messages in (verifying their signatures, fetching SNS's URLs safely) and
events out (``event_entry``, ``entries_publish``: the outbox relay's ``PublishBatch``).

django-ses 4.8.2 verifies SignatureVersion 1 (SHA1) only and fetches the SigningCertURL with
``requests`` (not installed here), caching a failed fetch for the life of the process. Here
both versions are verified, and a stranger's message can cost at most a bounded, rare fetch:

- ``cert_url_problem``: the SigningCertURL must have SNS's exact shape, https on the
  region's SNS host (or a host of ``SNS_CERT_TRUSTED_DOMAINS``, for tests) and the path
  ``/SimpleNotificationService-<hex>.pem``, no user, query or fragment. The webhook checks
  it, and the topic, before anything is fetched;
- fetches go through ``shop.aws.fetch`` (1 s connect, 2 s read, 64 KiB, no redirects), at most
  ``CERT_FETCHES_PER_MINUTE`` a minute and one at a time per process; over either bound the
  message is answered 503 (SNS retries) without a fetch;
- a certificate is kept a day; a URL that answered without one (4xx, not a certificate) is
  not asked again for ``CERT_REFUSED_TTL``; a host that could not be reached (network, 5xx)
  is not asked again for ``CERT_UNAVAILABLE_TTL``, its messages answered 503 meanwhile:
  remembered for a short time, never for good.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from cachetools import TLRUCache, TTLCache
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings

from shop import aws
from shop.aws.fetch import FetchFailed, bounded_get

logger = logging.getLogger(__name__)

#: SignatureVersion -> hash (https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html)
SIGNATURE_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
_CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn")
#: The fields SNS signs, per message Type, in this order.
SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (*_CONFIRMATION_FIELDS, "Type"),
    "UnsubscribeConfirmation": (*_CONFIRMATION_FIELDS, "Type"),
}
#: SNS's signing certificates: https://sns.<region>.amazonaws.com/SimpleNotificationService-<hex>.pem
CERT_PATH = re.compile(r"/SimpleNotificationService-[0-9A-Fa-f]{1,64}\.pem")
URL_MAX_LENGTH = 512
CERT_MAX_BYTES = 64 * 1024
CERT_TTL = 24 * 3600  # a fetched certificate is reused this long
CERT_REFUSED_TTL = 300  # a URL that answered 4xx or no certificate is not asked again this long
CERT_UNAVAILABLE_TTL = 30  # a host that could not be reached is not asked again this long
CERT_FETCHES_PER_MINUTE = 10  # per process, whatever the URLs
CERT_CACHE_MAX = 64  # certificates (or refusals) kept, the least recently used dropped first


def _clock() -> float:
    return time.monotonic()


def _cert_expiry(url: str, certificate: x509.Certificate | None, now: float) -> float:
    return now + (CERT_TTL if certificate is not None else CERT_REFUSED_TTL)


_UNKNOWN = object()
#: SigningCertURL -> its certificate, or None for a URL that answered without one.
_certs: TLRUCache = TLRUCache(maxsize=CERT_CACHE_MAX, ttu=_cert_expiry, timer=_clock)
#: host -> why it could not be reached.
_hosts_down: TTLCache = TTLCache(maxsize=CERT_CACHE_MAX, ttl=CERT_UNAVAILABLE_TTL, timer=_clock)
_fetches: deque[float] = deque()  # the fetches of the last minute (CERT_FETCHES_PER_MINUTE)
_certs_lock = threading.Lock()
#: One certificate fetch at a time per process: the others are answered 503 at once.
_fetch_slot = threading.BoundedSemaphore(1)


class CertificateUnavailable(Exception):
    """The signing certificate cannot be had now (network, 5xx, fetch bounds): SNS should
    retry (the webhook answers 503)."""


def certificate_cache_clear() -> None:
    with _certs_lock:
        _certs.clear()
        _hosts_down.clear()
        _fetches.clear()


def _aws_host() -> str:
    return f"sns.{settings.AWS_REGION}.amazonaws.com"


def url_problem(url: Any) -> str | None:
    """Why ``url`` is not an https URL of SNS's (the region's SNS host on the standard port,
    or a host of ``SNS_CERT_TRUSTED_DOMAINS``); None when it is."""
    if not isinstance(url, str) or len(url) > URL_MAX_LENGTH:
        return "not a URL"
    if not url.isascii() or not url.isprintable() or any(c in url for c in "\\ @"):
        return "not a plain URL"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "not a URL"
    if parts.scheme != "https":
        return "not https"
    host = (parts.hostname or "").rstrip(".").lower()
    extra = {d.lower().rstrip(".") for d in settings.SNS_CERT_TRUSTED_DOMAINS}
    if host == _aws_host() and port in (None, 443):
        return None
    if host and host in extra:
        return None
    return f"not on {_aws_host()}"


def trusted_sns_url(url: Any) -> bool:
    """An https URL of SNS's (``url_problem``): where a SubscribeURL may point."""
    return url_problem(url) is None


def cert_url_problem(url: Any) -> str | None:
    """Why ``url`` is not the SigningCertURL of an SNS message (exactly SNS's shape)."""
    problem = url_problem(url)
    if problem:
        return f"SigningCertURL {problem}"
    parts = urlsplit(url)
    if parts.query or parts.fragment or not CERT_PATH.fullmatch(parts.path):
        return "SigningCertURL is not /SimpleNotificationService-<hex>.pem"
    return None


def _fetch_budget_take(now: float) -> bool:
    """Count a fetch against CERT_FETCHES_PER_MINUTE; False when the minute's are used up."""
    while _fetches and _fetches[0] <= now - 60:
        _fetches.popleft()
    if len(_fetches) >= CERT_FETCHES_PER_MINUTE:
        return False
    _fetches.append(now)
    return True


def signing_certificate(url: str) -> x509.Certificate | None:
    """The certificate at ``url`` (``cert_url_problem`` passed), cached; None if it is not
    one. Raises CertificateUnavailable when it cannot be had now."""
    now = time.monotonic()
    host = (urlsplit(url).hostname or "").lower()
    with _certs_lock:
        if (known := _certs.get(url, _UNKNOWN)) is not _UNKNOWN:
            return known
        if (down := _hosts_down.get(host)) is not None:
            raise CertificateUnavailable(f"{host} could not be reached recently: {down}")
        if not _fetch_budget_take(now):
            raise CertificateUnavailable(
                f"{CERT_FETCHES_PER_MINUTE} certificate fetches this minute already"
            )
    if not _fetch_slot.acquire(blocking=False):
        raise CertificateUnavailable("another certificate fetch is in progress")
    try:
        answer = bounded_get(url, max_bytes=CERT_MAX_BYTES)
        if answer.status >= 500:
            raise FetchFailed(f"HTTP {answer.status}")
    except FetchFailed as exc:
        with _certs_lock:
            _hosts_down[host] = str(exc)
        raise CertificateUnavailable(f"could not fetch {url}: {exc}") from exc
    finally:
        _fetch_slot.release()
    try:
        ok = answer.status == 200
        certificate = x509.load_pem_x509_certificate(answer.body) if ok else None
    except ValueError:
        certificate = None
    if certificate is None:
        logger.warning("no signing certificate at %s (HTTP %s)", url, answer.status)
    with _certs_lock:
        _certs[url] = certificate
    return certificate


def url_fetch(url: str) -> tuple[int, bytes]:
    """GET an SNS URL (a SubscribeURL) within ``shop.aws.fetch``'s bounds; raises FetchFailed."""
    answer = bounded_get(url, max_bytes=CERT_MAX_BYTES)
    return answer.status, answer.body


def sns_bytes_to_sign(message: dict[str, Any]) -> bytes:
    """SNS's canonical string: ``name\\nvalue\\n`` per signed field present, in this order."""
    fields = SIGNED_FIELDS.get(message.get("Type"), ())
    # surrogatepass: a lone surrogate (valid JSON, never in a message SNS signed) must fail
    # the signature check, not the request.
    return "".join(
        f"{name}\n{message[name]}\n" for name in fields if message.get(name) is not None
    ).encode("utf-8", "surrogatepass")


def sns_signature_valid(message: dict[str, Any]) -> bool:
    """Whether an SNS message is signed by the certificate it names (a trusted host's)."""
    version = message.get("SignatureVersion")
    algorithm = SIGNATURE_HASHES.get(version) if isinstance(version, str) else None
    cert_url = message.get("SigningCertURL")
    if algorithm is None or not isinstance(message.get("Type"), str):
        return False
    if message["Type"] not in SIGNED_FIELDS:
        return False
    if problem := cert_url_problem(cert_url):
        logger.warning("SNS message refused: %s (%r)", problem, cert_url)
        return False
    try:
        signature = base64.b64decode(message.get("Signature", ""), validate=True)
    except (binascii.Error, ValueError):
        return False
    certificate = signing_certificate(cert_url)
    key = certificate.public_key() if certificate else None
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(signature, sns_bytes_to_sign(message), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        logger.warning("SNS message %r: invalid signature", message.get("MessageId"))
        return False
    return True


# --- messages out: publishing events ---------------------------------------------------------


def event_entry(
    *,
    entry_id: str,
    topic_arn: str,
    message: dict[str, Any],
    attributes: dict[str, str],
    group_id: str,
    deduplication_id: str,
) -> dict[str, Any]:
    """One ``PublishBatch`` entry: the event as compact JSON, its string attributes (what
    subscribers' filter policies match); on a FIFO topic grouped and deduplicated."""
    entry: dict[str, Any] = {
        "Id": entry_id,
        "Message": json.dumps(message, separators=(",", ":")),
        "MessageAttributes": {
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
        },
    }
    if topic_arn.endswith(".fifo"):
        entry["MessageGroupId"] = group_id
        entry["MessageDeduplicationId"] = deduplication_id
    return entry


def entries_publish(*, topic_arn: str, entries: list[dict[str, Any]]) -> aws.BatchAnswer:
    """One ``PublishBatch`` call (at most 10 entries, 256 KiB), one attempt (the caller's
    retry decides, as for ``shop.aws.sqs.publish.entries_send``). Raises botocore's errors
    when the call fails as a whole."""
    answer = aws.client("sns", single_attempt=True).publish_batch(
        TopicArn=topic_arn, PublishBatchRequestEntries=entries
    )
    return aws.BatchAnswer.parse(answer)

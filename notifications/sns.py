"""Amazon SNS messages in: verifying their signatures, and fetching SNS's URLs safely.

django-ses 4.8.2 verifies SignatureVersion 1 (SHA1) only and fetches the SigningCertURL with
``requests`` (not installed here), caching a failed fetch for the life of the process. Here
both versions are verified; a certificate URL must be https on a host listed in
``AWS_SNS_EVENT_CERT_TRUSTED_DOMAINS`` (exact names) with a ``.pem`` path; fetches are
urllib's, bounded (3 s timeout, no redirects, 64 KiB); and a certificate that cannot be
fetched *now* raises ``CertificateUnavailable`` so that the caller answers 503 and SNS retries.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
import urllib.error
import urllib.request
from http.client import HTTPException
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings

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
FETCH_TIMEOUT = 3  # seconds, for connecting and for each read
CERT_MAX_BYTES = 64 * 1024
CERT_TTL = 24 * 3600  # a fetched certificate is reused this long
CERT_REFUSED_TTL = 300  # a URL that answered 4xx or no certificate is not asked again this long
_CERT_CACHE_MAX = 64
_certs: dict[str, tuple[float, x509.Certificate | None]] = {}
_certs_lock = threading.Lock()


class CertificateUnavailable(Exception):
    """The signing certificate could not be fetched now (network, 5xx): SNS should retry."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs) -> None:
        return None  # the 3xx itself is then the answer (an HTTPError)


#: Plain urllib (TLS verified against the system's CAs, proxies from the environment), but
#: no redirects: a trusted URL must not hand the fetch on to another host.
_opener = urllib.request.build_opener(_NoRedirects)


def url_fetch(url: str) -> tuple[int, bytes]:
    """(status, at most CERT_MAX_BYTES + 1 bytes of the body); raises OSError and kin."""
    try:
        with _opener.open(url, timeout=FETCH_TIMEOUT) as response:
            return response.status, response.read(CERT_MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def certificate_cache_clear() -> None:
    with _certs_lock:
        _certs.clear()


def trusted_sns_url(url: Any, *, pem: bool = False) -> bool:
    """An https URL on a host of AWS_SNS_EVENT_CERT_TRUSTED_DOMAINS (exact host names)."""
    if not isinstance(url, str) or not url.isprintable() or any(c in url for c in "\\ @"):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  raises ValueError on a malformed port
    except ValueError:
        return False
    host = (parts.hostname or "").rstrip(".")
    trusted = {domain.lower().rstrip(".") for domain in settings.AWS_SNS_EVENT_CERT_TRUSTED_DOMAINS}
    return (
        parts.scheme == "https"
        and bool(host)
        and host in trusted
        and (not pem or parts.path.endswith(".pem"))
    )


def signing_certificate(url: str) -> x509.Certificate | None:
    """The certificate at ``url`` (trusted host), cached; None if it is not one."""
    now = time.monotonic()
    with _certs_lock:
        hit = _certs.get(url)
        if hit and hit[0] > now:
            return hit[1]
    try:
        status, body = url_fetch(url)
    except (OSError, HTTPException, ValueError) as exc:  # URLError is an OSError
        raise CertificateUnavailable(f"could not fetch {url}: {exc}") from exc
    if status >= 500:
        raise CertificateUnavailable(f"{url} answered {status}")
    try:
        ok = status == 200 and len(body) <= CERT_MAX_BYTES
        certificate = x509.load_pem_x509_certificate(body) if ok else None
    except ValueError:
        certificate = None
    if certificate is None:
        logger.warning("no signing certificate at %s", url)
    with _certs_lock:
        if len(_certs) >= _CERT_CACHE_MAX:
            _certs.clear()
        _certs[url] = (now + (CERT_TTL if certificate else CERT_REFUSED_TTL), certificate)
    return certificate


def sns_bytes_to_sign(message: dict[str, Any]) -> bytes:
    """SNS's canonical string: ``name\\nvalue\\n`` per signed field present, in this order."""
    fields = SIGNED_FIELDS.get(message.get("Type"), ())
    return "".join(
        f"{name}\n{message[name]}\n" for name in fields if message.get(name) is not None
    ).encode()


def sns_signature_valid(message: dict[str, Any]) -> bool:
    """Whether an SNS message is signed by the certificate it names (a trusted host's)."""
    version = message.get("SignatureVersion")
    algorithm = SIGNATURE_HASHES.get(version) if isinstance(version, str) else None
    cert_url = message.get("SigningCertURL")
    if algorithm is None or not isinstance(message.get("Type"), str):
        return False
    if message["Type"] not in SIGNED_FIELDS:
        return False
    if not trusted_sns_url(cert_url, pem=True):
        logger.warning("SNS message signed by a certificate at an untrusted URL: %r", cert_url)
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

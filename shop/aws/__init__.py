"""Amazon Web Services: boto3 clients, built once per process and configured from settings only.

The package is the one home of each AWS service: ``sqs`` (the order queue, its DLQ and the
Celery message envelope), ``sns`` (publishing events, verifying SNS's messages),
``cognito`` (ID tokens), ``provisioning`` (what ``manage.py provision_aws`` creates) and
``fetch`` (bounded HTTPS GETs of SNS's and Cognito's URLs). SES is the notifications app's
(``notifications.ses``): the shop sends email there only.

Every AWS client of the project comes from here, so each follows ``AWS_REGION`` and its
service's endpoint: boto3's ``AWS_ENDPOINT_URL_<SERVICE>`` over ``AWS_ENDPOINT_URL`` (the
emulator locally, unset on AWS). Clients are cached per
(service, region, endpoint): tests that move the endpoint get fresh clients.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from django.conf import settings

_clients: dict[tuple[str, str, str, bool, bool], Any] = {}
_lock = threading.Lock()
# One session per process: its loader parses botocore's endpoint and service data once, so a
# second client costs ~20 ms instead of ~150 ms (each is built under _lock: sessions are not
# thread-safe).
_session: boto3.session.Session | None = None
_CONFIG = Config(
    connect_timeout=2, read_timeout=10, retries={"mode": "standard", "max_attempts": 3}
)
# For calls a web request waits on (publishes after commit): fail fast, a single attempt.
_BOUNDED_CONFIG = Config(
    connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 1}
)


def client_config(*, bounded: bool = False, single_attempt: bool = False) -> Config:
    """The botocore configuration ``client`` gives a client (for a library that builds its
    own client from one, as django-ses does)."""
    if bounded:
        return _BOUNDED_CONFIG
    return _single_attempt_config() if single_attempt else _CONFIG


def _single_attempt_config() -> Config:
    """For calls that must not be repeated by botocore: SES's send. After a read timeout or a
    5xx SES may have taken the email already; the caller decides (SQS is the retry)."""
    return Config(
        connect_timeout=2,
        read_timeout=settings.SES_READ_TIMEOUT,
        retries={"mode": "standard", "total_max_attempts": 1},
    )


def endpoint_url(service_name: str) -> str:
    """The service's endpoint: ``AWS_ENDPOINT_URL_<SERVICE>`` if set, else ``AWS_ENDPOINT_URL``
    ("" on AWS: boto3's regional default). SESv2 follows SES, as django-ses's setting does."""
    if service_name in ("ses", "sesv2"):
        return settings.AWS_SES_ENDPOINT_URL
    return settings.AWS_ENDPOINT_URLS.get(service_name) or settings.AWS_ENDPOINT_URL


def client(service_name: str, *, bounded: bool = False, single_attempt: bool = False) -> Any:
    """The process's client for the service; ``bounded``: 1 s connect, 2 s read, no retry;
    ``single_attempt``: no retry, read timeout ``SES_READ_TIMEOUT``."""
    endpoint = endpoint_url(service_name)
    key = (service_name, settings.AWS_REGION, endpoint, bounded, single_attempt)
    global _session
    with _lock:
        if key not in _clients:
            _session = _session or boto3.session.Session()
            _clients[key] = _session.client(
                service_name,
                region_name=settings.AWS_REGION,
                endpoint_url=endpoint or None,
                config=client_config(bounded=bounded, single_attempt=single_attempt),
            )
        return _clients[key]


@dataclass(frozen=True)
class BatchAnswer:
    """What SQS's ``SendMessageBatch`` and SNS's ``PublishBatch`` answered, by entry id."""

    published: list[str]
    #: entry id -> "<Code>: <Message>"
    refused: dict[str, str]

    @classmethod
    def parse(cls, answer: dict[str, Any]) -> BatchAnswer:
        return cls(
            published=[item["Id"] for item in answer.get("Successful", [])],
            refused={
                item["Id"]: f"{item.get('Code', '?')}: {item.get('Message', '')}".strip()[:500]
                for item in answer.get("Failed", [])
            },
        )

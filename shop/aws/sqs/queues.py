"""What the operators' SQS calls share: the client, errors, and finding the queue pair.

Operators' calls, not the web or worker roles' (docs/deployment.md "IAM permissions (least
privilege)" lists them). Every SQS failure surfaces as ``QueueUnavailable`` with a short
reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from shop import aws

SQS_ERRORS = (BotoCoreError, ClientError)


class QueueUnavailable(Exception):
    """SQS could not be reached, or answered with an error."""


@dataclass(frozen=True)
class QueueRef:
    url: str
    arn: str


def sqs() -> Any:
    return aws.client("sqs")


def describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = " ".join(str(error.get("Message", "")).split())[:200]
        if message.startswith("<"):  # an HTML error page (the emulator's 500s), not a reason
            message = f"HTTP {status}"
        return f"{error.get('Code') or status}: {message}".rstrip(": ")
    return str(exc)[:300]


@contextmanager
def calling(what: str) -> Iterator[None]:
    try:
        yield
    except SQS_ERRORS as exc:
        raise QueueUnavailable(f"SQS {what} failed ({describe(exc)})") from exc


def attributes_get(url: str, names: list[str]) -> dict[str, str]:
    with calling(f"GetQueueAttributes on {queue_name(url)}"):
        return sqs().get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]


def queue_name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def redrive_policy(attributes: dict[str, str]) -> dict[str, Any]:
    try:
        policy = json.loads(attributes.get("RedrivePolicy") or "{}")
    except ValueError:
        return {}
    return policy if isinstance(policy, dict) and policy.get("deadLetterTargetArn") else {}


def url_of(arn: str, *, beside: str) -> str:
    """The URL of a queue given its ARN, on the same endpoint as ``beside``.

    A dead-letter queue is always in the same account and region as its source queue, so no
    GetQueueUrl call (and permission) is needed.
    """
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise QueueUnavailable(f"the order queue's redrive policy names no SQS queue ({arn!r})")
    base = beside.rstrip("/").rsplit("/", 2)[0]
    return f"{base}/{parts[4]}/{parts[5]}"


def queue_pair() -> tuple[QueueRef, QueueRef]:
    """The order queue and its dead-letter queue (named by the order queue's RedrivePolicy)."""
    url = settings.ORDER_QUEUE_URL
    attributes = attributes_get(url, ["QueueArn", "RedrivePolicy"])
    policy = redrive_policy(attributes)
    if not policy:
        raise QueueUnavailable(
            f"the queue {queue_name(url)} has no redrive policy: no dead-letter queue"
        )
    dlq_arn = policy["deadLetterTargetArn"]
    return QueueRef(url, attributes.get("QueueArn", "")), QueueRef(
        url_of(dlq_arn, beside=url), dlq_arn
    )


def int_attribute(attributes: dict[str, str], name: str) -> int:
    try:
        return int(attributes.get(name, 0))
    except ValueError:
        return 0

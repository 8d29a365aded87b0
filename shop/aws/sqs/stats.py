"""The queue pair's health, as SQS counts it (GetQueueAttributes)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from shop.aws.sqs.queues import (
    attributes_get,
    int_attribute,
    queue_name,
    redrive_policy,
    url_of,
)

_STATS_ATTRIBUTES = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "RedrivePolicy",
    "QueueArn",
]


@dataclass(frozen=True)
class QueueStats:
    role: str  # "orders" or "dead-letter"
    name: str
    url: str
    visible: int
    in_flight: int
    delayed: int
    #: Not in SQS's API: only the CloudWatch metric ApproximateAgeOfOldestMessage has it, and
    #: a peek would count as a receive (on the order queue, a step towards the DLQ). Always None.
    oldest_age_seconds: int | None
    visibility_timeout: int
    max_receive_count: int | None
    dlq_url: str | None
    retention_seconds: int


def queue_stats() -> list[QueueStats]:
    """The order queue and its dead-letter queue, as SQS counts them (GetQueueAttributes)."""
    url = settings.ORDER_QUEUE_URL
    orders = attributes_get(url, _STATS_ATTRIBUTES)
    policy = redrive_policy(orders)
    queues = [("orders", url, orders, policy)]
    if policy:
        dlq_url = url_of(policy["deadLetterTargetArn"], beside=url)
        queues.append(("dead-letter", dlq_url, attributes_get(dlq_url, _STATS_ATTRIBUTES), {}))
    stats = []
    for role, queue_url, attributes, redrive in queues:
        try:
            max_receive_count = int(redrive["maxReceiveCount"]) if redrive else None
        except (KeyError, TypeError, ValueError):
            max_receive_count = None
        stats.append(
            QueueStats(
                role=role,
                name=queue_name(queue_url),
                url=queue_url,
                visible=int_attribute(attributes, "ApproximateNumberOfMessages"),
                in_flight=int_attribute(attributes, "ApproximateNumberOfMessagesNotVisible"),
                delayed=int_attribute(attributes, "ApproximateNumberOfMessagesDelayed"),
                oldest_age_seconds=None,
                visibility_timeout=int_attribute(attributes, "VisibilityTimeout"),
                max_receive_count=max_receive_count,
                dlq_url=url_of(redrive["deadLetterTargetArn"], beside=url) if redrive else None,
                retention_seconds=int_attribute(attributes, "MessageRetentionPeriod"),
            )
        )
    return stats

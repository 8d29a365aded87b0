"""Publishing Celery tasks to the predefined SQS order queue.

- ``task_entry`` and ``entries_send``: the outbox relay's ``SendMessageBatch`` (how the shop
  publishes; ``shop.outbox.relay``).
- ``confirmation_enqueue``: one task with Celery's own ``send_task`` (tests and benchmarks,
  and the first version's messages).

Tasks are named, not imported, so this module needs neither the tasks nor the services.
"""

from __future__ import annotations

import logging
import uuid

from celery import current_app
from django.conf import settings

from shop import aws
from shop.aws.sqs.envelope import envelope_encode, fifo_fields

logger = logging.getLogger(__name__)


def confirmation_enqueue(*, order_id: int) -> None:
    """Put one confirmation task for the order on the order queue. The message holds ids only."""
    current_app.send_task(
        settings.CONFIRMATION_TASK_NAME,
        kwargs={"order_id": order_id},
        queue=settings.ORDER_QUEUE_NAME,
        # The queue is predefined: declaring it would only cost a GetQueueAttributes call
        # (and an IAM permission for the web role) per connection.
        declare=[],
        # On a FIFO queue: kombu's SQS transport takes MessageGroupId and
        # MessageDeduplicationId from the message's properties (without them it would put every
        # order in one group, "default").
        **fifo_fields(
            queue_url=settings.ORDER_QUEUE_URL,
            group_id=str(order_id),
            deduplication_id=uuid.uuid4().hex,
        ),
    )
    logger.info("queued confirmation email for order %s", order_id, extra={"order_id": order_id})


def task_entry(
    *,
    entry_id: str,
    queue_url: str,
    task_name: str,
    args: tuple = (),
    kwargs: dict | None = None,
    task_id: str | None = None,
    group_id: str,
) -> dict:
    """One ``SendMessageBatch`` entry: a Celery task message exactly as the worker consumes it
    (``envelope_encode``); on a FIFO queue grouped by ``group_id`` and deduplicated by
    ``entry_id``."""
    body = envelope_encode(task_name=task_name, args=args, kwargs=kwargs or {}, task_id=task_id)
    return {
        "Id": entry_id,
        "MessageBody": body,
        **fifo_fields(queue_url=queue_url, group_id=group_id, deduplication_id=entry_id),
    }


def entries_send(*, queue_url: str, entries: list[dict]) -> aws.BatchAnswer:
    """One ``SendMessageBatch`` call (at most 10 entries, 256 KiB), one attempt: botocore would
    send a whole batch again after a read timeout although SQS may have taken it (3 copies of
    each message were seen under load); the caller's retry decides. Raises botocore's errors
    when the call fails as a whole."""
    answer = aws.client("sqs", single_attempt=True).send_message_batch(
        QueueUrl=queue_url, Entries=entries
    )
    return aws.BatchAnswer.parse(answer)

"""Publishing confirmation tasks to the predefined SQS queue.

Publishes by task name (``send_task``), so this module needs neither the task nor the
services, and no import cycle can form.
"""

from __future__ import annotations

import logging
import uuid

from celery import current_app
from django.conf import settings

from shop.aws.sqs.envelope import fifo_fields

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

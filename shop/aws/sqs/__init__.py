"""Amazon SQS: the one home of the order queue, its dead-letter queue and their messages.

- ``envelope``: a Celery task message on SQS, written and read (the only encoder and decoder:
  the relay, the worker's hardening, the DLQ pages and the tests use it).
- ``transport``: kombu's SQS transport and Celery's consumer, hardened against poison
  messages (``CELERY_BROKER_TRANSPORT``, ``CELERY_WORKER_CONSUMER``).
- ``publish``: tasks onto the order queue: the outbox relay's ``SendMessageBatch``
  (``shop.outbox.relay``), and Celery's own ``send_task`` (tests and benchmarks).
- ``queues``: the operators' client, errors, and the queue pair (the DLQ named by the redrive
  policy); ``stats``: their counts and settings.
- ``dlq``: the dead-letter queue's messages: look, move back to the order queue, delete.
- ``messages``: what a message says (task, order or email id), poison messages included.
"""

from shop.aws.sqs.dlq import (
    ACTION_HOLD_SECONDS,
    PEEK_HOLD_SECONDS,
    PEEK_MAX,
    DeadLetter,
    DlqPass,
    dlq_delete,
    dlq_move_task_available,
    dlq_move_task_start,
    dlq_peek,
    dlq_redrive,
)
from shop.aws.sqs.messages import DecodedMessage, message_decode
from shop.aws.sqs.publish import confirmation_enqueue
from shop.aws.sqs.queues import QueueUnavailable
from shop.aws.sqs.stats import QueueStats, queue_stats

__all__ = [
    "ACTION_HOLD_SECONDS",
    "PEEK_HOLD_SECONDS",
    "PEEK_MAX",
    "DeadLetter",
    "DecodedMessage",
    "DlqPass",
    "QueueStats",
    "QueueUnavailable",
    "confirmation_enqueue",
    "dlq_delete",
    "dlq_move_task_available",
    "dlq_move_task_start",
    "dlq_peek",
    "dlq_redrive",
    "message_decode",
    "queue_stats",
]

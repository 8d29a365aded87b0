"""Amazon SQS: the only package of notifications that talks to SQS.

- ``publish``: the confirmation task, by name, onto the predefined order queue with Celery's
  own ``send_task`` (tests and benchmarks; the shop itself publishes through the outbox
  relay, ``shop.outbox.relay``).
- ``stats``: the order queue's and its dead-letter queue's counts and settings.
- ``dlq``: the dead-letter queue's messages: look, move back to the order queue, delete.
- ``messages``: what a message says (task, order id), poison messages included; the wire
  format itself is ``shop.aws.sqs.envelope``'s.
- ``pair``: the client, errors, and the queue pair (the DLQ named by the redrive policy).
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

from django.db import models
from django.utils import timezone


class OutboxKind(models.TextChoices):
    # A Celery task for an SQS queue (``destination``: the queue's URL).
    SQS_TASK = "sqs_task", "SQS task"
    # An event for an SNS topic (``destination``: the topic's ARN).
    SNS_EVENT = "sns_event", "SNS event"


class OutboxMessage(models.Model):
    """Something the shop must tell SQS or SNS because of a committed change: written in the
    change's own transaction (``shop.outbox``), published and deleted by the relay
    (``manage.py outbox_relay``). A row that exists is a message not yet known published."""

    kind = models.CharField(max_length=16, choices=OutboxKind.choices)
    # The queue URL or the topic ARN, as configured when the row was written.
    destination = models.CharField(max_length=512)
    # sqs_task: {"task": name, "args": [...], "kwargs": {...}, "task_id": uuid};
    # sns_event: {"message": the event (JSON object), "attributes": SNS MessageAttributes,
    # "deduplication_id": str}.
    payload = models.JSONField()
    # FIFO message group (the order): MessageGroupId on a .fifo queue or topic.
    group_id = models.CharField(max_length=128, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    # Not published before this time (set after a failed attempt: the back-off); empty: due
    # now (new rows carry no clock of the machine that wrote them).
    available_at = models.DateTimeField(null=True, blank=True)
    # Failed publish attempts so far, and the last one's reason.
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    # A relay has claimed the row until then (a lease: a relay that died lets it go).
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["available_at", "id"], name="shop_outbox_due")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} to {self.destination.rsplit('/', 1)[-1]}"

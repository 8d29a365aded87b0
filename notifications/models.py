from django.db import models


class EmailStatus(models.TextChoices):
    # Recorded with the order; the task is (or is about to be) on the queue.
    PENDING = "pending", "Pending"
    # The last attempt failed; SQS redelivers until the message is dead-lettered.
    FAILED = "failed", "Failed"
    # SES accepted the email.
    SENT = "sent", "Sent"


class ConfirmationEmail(models.Model):
    """The order-confirmation email of one order: created with the order, in its transaction."""

    order = models.OneToOneField(
        "orders.Order", on_delete=models.CASCADE, related_name="confirmation_email"
    )
    status = models.CharField(
        max_length=16, choices=EmailStatus.choices, default=EmailStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    ses_message_id = models.CharField(max_length=200, blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    # When the task was last put on the queue (null: never, e.g. SQS was down at commit time).
    queued_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"Confirmation of order {self.order_id}: {self.status}"

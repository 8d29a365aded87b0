from django.db import models
from django.utils import timezone


class EmailStatus(models.TextChoices):
    # Recorded with the order (or put back by a resend); the task is, or is about to be, queued.
    PENDING = "pending", "Pending"
    # The last attempt failed; SQS redelivers until the message is dead-lettered.
    FAILED = "failed", "Failed"
    # SES accepted the email.
    SENT = "sent", "Sent"
    # Not sent: the address is on the suppression list (an earlier bounce or complaint).
    SUPPRESSED = "suppressed", "Suppressed"
    # SES reported the email delivered to the recipient's mail server.
    DELIVERED = "delivered", "Delivered"
    # SES reported a bounce, or the recipient marked the email as spam.
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained"


#: Statuses of an email SES accepted: a later delivery of its message sends nothing.
SENT_STATUSES = frozenset(
    {EmailStatus.SENT, EmailStatus.DELIVERED, EmailStatus.BOUNCED, EmailStatus.COMPLAINED}
)


class EmailKind(models.TextChoices):
    # Sent when the order is placed; the order is confirmed once SES accepts it.
    CONFIRMATION = "confirmation", "Confirmation"
    # Sent when staff mark the order shipped (with its tracking link, when given).
    SHIPPED = "shipped", "Shipped"
    # Sent when staff cancel the order.
    CANCELLED = "cancelled", "Cancelled"


class OrderEmail(models.Model):
    """One email of one order, of one kind (confirmation, shipped, cancelled): created in the
    transaction of what it tells (the order placed, shipped, cancelled), with its task in the
    outbox. Everything an email goes through (status, attempts, history, SES message ids,
    suppression, preview, resend, the DLQ) is the same for every kind."""

    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="emails")
    kind = models.CharField(
        max_length=16,
        choices=EmailKind.choices,
        default=EmailKind.CONFIRMATION,
        db_default=EmailKind.CONFIRMATION,
    )
    status = models.CharField(
        max_length=16, choices=EmailStatus.choices, default=EmailStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    # When the task was last put on the queue (null: never, e.g. SQS was down at commit time).
    queued_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"])]
        constraints = [
            models.UniqueConstraint(fields=["order", "kind"], name="orderemail_one_per_kind")
        ]
        permissions = [
            ("operate_queues", "Can redrive and delete dead-lettered messages"),
            ("resend_confirmation", "Can resend confirmation emails"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} email of order {self.order_id}: {self.status}"


class SesMessage(models.Model):
    """A message id SES gave when it accepted an email: one row per send, so a resend keeps
    the ids of the earlier sends and a late SES event for any of them is matched.

    Belongs to an email record (``OrderEmail``, of any kind).
    """

    message_id = models.CharField(max_length=200, unique=True)
    email = models.ForeignKey(OrderEmail, on_delete=models.CASCADE, related_name="ses_messages")
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-sent_at", "-id"]
        indexes = [models.Index(fields=["email", "-sent_at"])]
        verbose_name = "SES message"

    def __str__(self) -> str:
        return self.message_id


class EmailEventKind(models.TextChoices):
    # Published to the order queue (after the order committed, or by the sweep).
    QUEUED = "queued", "Queued"
    # Staff asked for the email again.
    RESEND = "resend", "Resend requested"
    # A worker's attempt: SES accepted the email / the attempt failed / skipped (suppressed).
    SENT = "sent", "Sent"
    FAILED = "failed", "Attempt failed"
    # No send slot (SES's fleet-wide rate) before the task's time limit: back on the queue
    # shortly, not a failure.
    THROTTLED = "throttled", "Throttled: back on the queue"
    SUPPRESSED = "suppressed", "Skipped: address suppressed"
    # Staff moved its message from the dead-letter queue back to the order queue, or deleted it.
    REDRIVEN = "redriven", "Redriven from the DLQ"
    DELETED = "deleted", "Deleted from the DLQ"
    # SES events (through SNS).
    DELIVERED = "delivered", "Delivered"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complaint"
    REJECTED = "rejected", "Rejected by SES"


class EmailEvent(models.Model):
    """One entry of an email's history: attempts, resends, redrives and SES's reports."""

    notification = models.ForeignKey(OrderEmail, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=EmailEventKind.choices)
    # SQS's ApproximateReceiveCount of the delivery that made the attempt.
    attempt = models.PositiveIntegerField(null=True, blank=True)
    detail = models.TextField(blank=True, default="")
    # The staff member who asked for it (resend, redrive, delete); empty for the system.
    actor = models.CharField(max_length=150, blank=True, default="")
    # The SNS message that reported it (SES events only): SNS delivers at least once, and a
    # message is recorded once. Empty for every other entry.
    sns_message_id = models.CharField(max_length=100, blank=True, default="", db_default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["notification", "created_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["sns_message_id"],
                condition=~models.Q(sns_message_id=""),
                name="emailevent_sns_message_once",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.created_at:%Y-%m-%d %H:%M:%S})"


class SuppressionReason(models.TextChoices):
    # A permanent bounce: the address does not exist or refuses mail.
    BOUNCE = "bounce", "Bounce"
    # The recipient marked an email as spam.
    COMPLAINT = "complaint", "Complaint"


class SuppressedAddress(models.Model):
    """An address the shop no longer sends to. Stored lowercased."""

    email = models.EmailField(max_length=254, unique=True)
    reason = models.CharField(max_length=16, choices=SuppressionReason.choices)
    detail = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "suppressed addresses"

    def __str__(self) -> str:
        return f"{self.email} ({self.reason})"


class SendRateSlot(models.Model):
    """The fleet's SES send schedule: the time of the next free send slot, one row per SES
    account and region. ``notifications.send_rate`` moves it with one atomic
    ``UPDATE ... RETURNING`` per send, so every worker process on every machine shares one
    rate."""

    name = models.CharField(max_length=64, primary_key=True)
    next_slot = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name}: next slot {self.next_slot:%H:%M:%S.%f}"

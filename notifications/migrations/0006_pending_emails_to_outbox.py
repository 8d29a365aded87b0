"""Every confirmation email still ``pending`` gets its task in the outbox, so a deploy that
replaces the publish-after-commit and the sweep with the outbox relay loses nothing: a record
never queued (its publish failed) is published by the relay, and so is one queued whose
message may have been lost (what the sweep used to re-publish). A record whose message is in
fact still on the queue is then there twice; the second delivery finds it ``sent`` and skips."""

import uuid

from django.conf import settings
from django.db import migrations
from django.utils import timezone


def forwards(apps, schema_editor):
    ConfirmationEmail = apps.get_model("notifications", "ConfirmationEmail")
    OutboxMessage = apps.get_model("shop", "OutboxMessage")
    now = timezone.now()
    pending = (
        ConfirmationEmail.objects.filter(status="pending")
        .order_by("created_at", "pk")
        .values_list("order_id", flat=True)
    )
    rows = [
        OutboxMessage(
            kind="sqs_task",
            destination=settings.ORDER_QUEUE_URL,
            payload={
                "task": settings.CONFIRMATION_TASK_NAME,
                "args": [],
                "kwargs": {"order_id": order_id},
                "task_id": str(uuid.uuid4()),
            },
            group_id=str(order_id),
            created_at=now,
        )
        for order_id in pending.iterator()
    ]
    OutboxMessage.objects.bulk_create(rows, batch_size=500)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0005_send_rate"),
        ("shop", "0002_outbox_notify"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]

"""The SNS message id of an SES event's history entry becomes a unique column.

Entries recorded before kept it only as the ``[SNS <id>]`` suffix of their detail (the detail
keeps it). The backfill copies it into the column; an SNS message recorded twice before (it
could not be since the row lock came in, but rows are what they are) keeps the id on its
earliest entry only, the later copies' column is left empty, so the unique constraint can be
added.
"""

import re

from django.db import migrations, models

_TAG = re.compile(r"\[SNS ([^\[\]\s]{1,100})\]\Z")
_BATCH = 500


def sns_message_ids_backfill(apps, schema_editor):
    EmailEvent = apps.get_model("notifications", "EmailEvent")
    seen: set[str] = set()
    batch = []
    tagged = EmailEvent.objects.filter(detail__contains="[SNS ").order_by("created_at", "id")
    for event in tagged.only("id", "detail").iterator(chunk_size=_BATCH):
        match = _TAG.search(event.detail)
        if match is None or match.group(1) in seen:
            continue  # not an SES event's entry, or a later copy of one recorded before
        seen.add(match.group(1))
        event.sns_message_id = match.group(1)
        batch.append(event)
        if len(batch) >= _BATCH:
            EmailEvent.objects.bulk_update(batch, ["sns_message_id"])
            batch = []
    EmailEvent.objects.bulk_update(batch, ["sns_message_id"])


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0007_order_emails"),
    ]

    operations = [
        migrations.AddField(
            model_name="emailevent",
            name="sns_message_id",
            # db_default: processes of the previous release, during a deploy, write entries
            # without it.
            field=models.CharField(blank=True, db_default="", default="", max_length=100),
        ),
        # Backwards the column goes, and with it what was copied: nothing to undo.
        migrations.RunPython(sns_message_ids_backfill, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="emailevent",
            constraint=models.UniqueConstraint(
                condition=~models.Q(sns_message_id=""),
                fields=("sns_message_id",),
                name="emailevent_sns_message_once",
            ),
        ),
    ]

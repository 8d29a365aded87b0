"""One email record per (order, kind): the confirmation email's record becomes ``OrderEmail``
with a ``kind``; every existing row is a confirmation. The table is renamed with the model,
and the model's default permissions keep their grants under their new names (staff who could
view confirmation emails can view order emails)."""

import django.db.models.deletion
from django.db import migrations, models


def permissions_rename(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    ContentType = apps.get_model("contenttypes", "ContentType")
    content_type = ContentType.objects.filter(app_label="notifications", model="orderemail").first()
    if content_type is None:  # a new database: post_migrate creates the new ones
        return
    for action in ("add", "change", "delete", "view"):
        Permission.objects.filter(
            content_type=content_type, codename=f"{action}_confirmationemail"
        ).update(codename=f"{action}_orderemail", name=f"Can {action} order email")


def permissions_unrename(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    for action in ("add", "change", "delete", "view"):
        Permission.objects.filter(
            content_type__app_label="notifications", codename=f"{action}_orderemail"
        ).update(codename=f"{action}_confirmationemail", name=f"Can {action} confirmation email")


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("orders", "0004_lifecycle"),
        ("notifications", "0006_pending_emails_to_outbox"),
    ]

    operations = [
        migrations.RenameModel("ConfirmationEmail", "OrderEmail"),
        migrations.AddField(
            model_name="orderemail",
            name="kind",
            field=models.CharField(
                choices=[
                    ("confirmation", "Confirmation"),
                    ("shipped", "Shipped"),
                    ("cancelled", "Cancelled"),
                ],
                default="confirmation",
                # Processes of the previous release, during a deploy, write confirmations.
                db_default="confirmation",
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="orderemail",
            name="order",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="emails",
                to="orders.order",
            ),
        ),
        migrations.AddConstraint(
            model_name="orderemail",
            constraint=models.UniqueConstraint(
                fields=("order", "kind"), name="orderemail_one_per_kind"
            ),
        ),
        migrations.RenameIndex(
            model_name="orderemail",
            new_name="notificatio_status_273b40_idx",
            old_name="notificatio_status_034116_idx",
        ),
        migrations.RunPython(permissions_rename, permissions_unrename),
    ]

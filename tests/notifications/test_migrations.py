"""Data migrations, run forwards and backwards on rows written with the old schema."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("notifications", "0003_email_history_and_suppression")]
AFTER = [("notifications", "0004_ses_messages")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def old_schema():
    apps = _migrate(BEFORE)
    yield apps
    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


def _order(apps, n: int):
    Order = apps.get_model("orders", "Order")
    return Order.objects.create(
        customer_id=f"c{n}",
        customer_email=f"c{n}@example.com",
        shipping_name="A",
        shipping_line1="1",
        shipping_city="T",
        shipping_postal_code="1",
        shipping_country="US",
        total=1,
        currency="USD",
    )


def test_each_ses_message_id_becomes_a_row_and_comes_back(old_schema):
    ConfirmationEmail = old_schema.get_model("notifications", "ConfirmationEmail")
    sent_at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    sent = ConfirmationEmail.objects.create(
        order=_order(old_schema, 1), status="sent", ses_message_id="0100-abc", sent_at=sent_at
    )
    pending = ConfirmationEmail.objects.create(order=_order(old_schema, 2), status="pending")

    apps = _migrate(AFTER)
    SesMessage = apps.get_model("notifications", "SesMessage")
    assert list(SesMessage.objects.values_list("message_id", "email_id", "sent_at")) == [
        ("0100-abc", sent.pk, sent_at)
    ]
    SesMessage.objects.create(
        message_id="0100-newer", email_id=sent.pk, sent_at=sent_at + dt.timedelta(days=1)
    )

    apps = _migrate(BEFORE)  # backwards: the latest id is kept
    ConfirmationEmail = apps.get_model("notifications", "ConfirmationEmail")
    assert ConfirmationEmail.objects.get(pk=sent.pk).ses_message_id == "0100-newer"
    assert ConfirmationEmail.objects.get(pk=pending.pk).ses_message_id == ""


def test_every_pending_email_gets_its_outbox_row(settings):
    """The deploy that brings the outbox: nothing still pending is left behind (the sweep that
    used to re-publish such records is gone)."""
    before = [
        ("notifications", "0005_send_rate"),
        ("shop", "0002_outbox_notify"),
        ("orders", "0004_lifecycle"),
    ]
    apps = _migrate(before)
    try:
        ConfirmationEmail = apps.get_model("notifications", "ConfirmationEmail")
        never_queued = ConfirmationEmail.objects.create(order=_order(apps, 1), status="pending")
        queued = ConfirmationEmail.objects.create(
            order=_order(apps, 2), status="pending", queued_at=dt.datetime.now(dt.UTC)
        )
        for n, status in enumerate(("sent", "failed", "suppressed"), start=3):
            ConfirmationEmail.objects.create(order=_order(apps, n), status=status)
        assert apps.get_model("shop", "OutboxMessage").objects.count() == 0

        apps = _migrate([("notifications", "0006_pending_emails_to_outbox")])
        rows = apps.get_model("shop", "OutboxMessage").objects.order_by("id")
        assert [(r.kind, r.destination, r.payload["kwargs"], r.group_id) for r in rows] == [
            (
                "sqs_task",
                settings.ORDER_QUEUE_URL,
                {"order_id": record.order_id},
                str(record.order_id),
            )
            for record in (never_queued, queued)
        ]
        assert {r.payload["task"] for r in rows} == {settings.CONFIRMATION_TASK_NAME}
        assert all(r.available_at is None and r.attempts == 0 for r in rows)  # due now
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


def test_confirmation_records_become_order_emails_and_keep_their_permissions():
    """0007: each ConfirmationEmail row is an OrderEmail of kind ``confirmation`` (its history
    and SES ids with it); staff granted "Can view confirmation email" can view order emails."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    apps = _migrate([("notifications", "0006_pending_emails_to_outbox")])
    try:
        old = apps.get_model("notifications", "ConfirmationEmail")
        record = old.objects.create(order=_order(apps, 1), status="sent")
        apps.get_model("notifications", "EmailEvent").objects.create(
            notification_id=record.pk, kind="sent"
        )
        apps.get_model("notifications", "SesMessage").objects.create(
            message_id="ses-1", email_id=record.pk
        )
        view = Permission.objects.get(
            content_type__app_label="notifications", codename="view_confirmationemail"
        )
        user = get_user_model().objects.create_user("viewer", is_staff=True)
        user.user_permissions.add(view)
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    from notifications.models import OrderEmail

    email = OrderEmail.objects.get(pk=record.pk)
    assert (email.kind, email.status, email.order_id) == ("confirmation", "sent", record.order_id)
    assert list(email.events.values_list("kind", flat=True)) == ["sent"]
    assert list(email.ses_messages.values_list("message_id", flat=True)) == ["ses-1"]
    user = get_user_model().objects.get(pk=user.pk)
    assert user.has_perm("notifications.view_orderemail")
    assert not Permission.objects.filter(codename__endswith="_confirmationemail").exists()


def test_sns_message_ids_become_a_unique_column_once_each():
    """0008: the ``[SNS <id>]`` suffix of each SES event's entry fills ``sns_message_id``; an
    SNS message recorded twice before keeps it on its earliest entry only."""
    from django.db import IntegrityError, transaction

    apps = _migrate([("notifications", "0007_order_emails")])
    try:
        OrderEmail = apps.get_model("notifications", "OrderEmail")
        EmailEvent = apps.get_model("notifications", "EmailEvent")
        record = OrderEmail.objects.create(order=_order(apps, 1), status="bounced")
        at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

        def event(kind: str, detail: str, minutes: int) -> int:
            created_at = at + dt.timedelta(minutes=minutes)
            return EmailEvent.objects.create(
                notification_id=record.pk, kind=kind, detail=detail, created_at=created_at
            ).pk

        sent = event("sent", "SES message 0100-abc", 0)
        delivered = event("delivered", "delivered to b@example.com [SNS sns-1]", 1)
        twice_later = event("bounced", "bounced: Permanent [SNS sns-2]", 3)
        twice_first = event("bounced", "bounced: Permanent [SNS sns-2]", 2)
        quoted = event("failed", "a [SNS sns-3] quoted, not a suffix", 4)
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    from notifications.models import EmailEvent

    columns = dict(EmailEvent.objects.values_list("pk", "sns_message_id"))
    assert columns == {
        sent: "",
        delivered: "sns-1",
        twice_first: "sns-2",
        twice_later: "",
        quoted: "",
    }
    with pytest.raises(IntegrityError), transaction.atomic():
        EmailEvent.objects.create(notification_id=record.pk, kind="bounced", sns_message_id="sns-1")
    EmailEvent.objects.create(notification_id=record.pk, kind="queued")  # empty: no constraint

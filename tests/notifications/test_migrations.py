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
    OrderEmail = old_schema.get_model("notifications", "OrderEmail")
    sent_at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    sent = OrderEmail.objects.create(
        order=_order(old_schema, 1), status="sent", ses_message_id="0100-abc", sent_at=sent_at
    )
    pending = OrderEmail.objects.create(order=_order(old_schema, 2), status="pending")

    apps = _migrate(AFTER)
    SesMessage = apps.get_model("notifications", "SesMessage")
    assert list(SesMessage.objects.values_list("message_id", "email_id", "sent_at")) == [
        ("0100-abc", sent.pk, sent_at)
    ]
    SesMessage.objects.create(
        message_id="0100-newer", email_id=sent.pk, sent_at=sent_at + dt.timedelta(days=1)
    )

    apps = _migrate(BEFORE)  # backwards: the latest id is kept
    OrderEmail = apps.get_model("notifications", "OrderEmail")
    assert OrderEmail.objects.get(pk=sent.pk).ses_message_id == "0100-newer"
    assert OrderEmail.objects.get(pk=pending.pk).ses_message_id == ""

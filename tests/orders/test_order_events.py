"""`OrderPlaced` on SNS: fanned out to subscribed SQS queues of the session's emulator.

The emulator's SNS delivers to subscribed queues during Publish, so a queue can be read
right after the relay's pass (``tests.outbox.relay_once``) published the order's outbox rows.
Orders are placed through the API with a real emulator token; the relay publishes the
confirmation too (the order queue is drained after each test).
"""

from __future__ import annotations

import json
import logging
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orders import events, services
from orders.models import Order, OrderLine, Product
from shop import aws, outbox
from shop.aws import provisioning
from shop.models import OutboxMessage
from tests.aws_emulator import TEST_QUEUE_NAME, TEST_VISIBILITY_TIMEOUT
from tests.aws_proxy import AwsProxy
from tests.factories import ProductFactory
from tests.helpers import auth, order_body
from tests.outbox import relay_once
from tests.pipeline import drain

pytestmark = pytest.mark.django_db

ADDRESS = {
    "name": "Alice Addressee",
    "line1": "77 Secret Lane",
    "line2": "Flat 9",
    "city": "Hiddenville",
    "postal_code": "SW1A 2AA",
    "country": "GB",
}
EVENT_KEYS = {
    "event_type",
    "event_version",
    "event_id",
    "order_id",
    "customer_id",
    "lines",
    "total",
    "currency",
    "placed_at",
}


@pytest.fixture(autouse=True)
def _drain_order_queue():
    """The relay publishes real confirmation tasks: leave no stray one behind."""
    yield
    drain(settings.ORDER_QUEUE_URL)


@pytest.fixture
def topic():
    """A fresh SNS topic on the emulator; deleted afterwards."""
    arn = aws.client("sns").create_topic(Name=f"order-events-{uuid.uuid4().hex[:8]}")["TopicArn"]
    yield arn
    aws.client("sns").delete_topic(TopicArn=arn)


@pytest.fixture
def subscribe():
    """subscribe(topic_arn, raw=..., filter_policy=..., fifo=...) -> URL of a new queue."""
    created: list[str] = []

    def make(
        topic_arn: str, *, raw: bool, filter_policy: dict | None = None, fifo: bool = False
    ) -> str:
        name = f"order-events-sub-{uuid.uuid4().hex[:8]}" + (".fifo" if fifo else "")
        sqs = aws.client("sqs")
        url = sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"} if fifo else {})[
            "QueueUrl"
        ]
        created.append(url)
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        attributes = {"RawMessageDelivery": "true" if raw else "false"}
        if filter_policy is not None:
            attributes["FilterPolicy"] = json.dumps(filter_policy)
        aws.client("sns").subscribe(
            TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes=attributes
        )
        return url

    yield make
    for url in created:
        aws.client("sqs").delete_queue(QueueUrl=url)


def received(queue_url: str) -> list[dict]:
    """Every message now in the queue (deleted as read), with attributes."""
    messages: list[dict] = []
    while True:
        batch = (
            aws.client("sqs")
            .receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
            )
            .get("Messages", [])
        )
        if not batch:
            return messages
        for message in batch:
            aws.client("sqs").delete_message(
                QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        messages.extend(batch)


def sns_publish_counts() -> dict[str, int]:
    """Messages each topic of the emulator was sent so far, from moto's model store."""
    with urllib.request.urlopen(f"{settings.AWS_ENDPOINT_URL}/moto-api/data.json", timeout=5) as r:
        topics = json.load(r).get("sns", {}).get("Topic", [])
    return {topic["arn"]: len(topic["sent_notifications"]) for topic in topics}


def place(client, body: dict, **headers):
    return client.post("/api/orders/", body, format="json", **headers)


# --- the message --------------------------------------------------------------------------


def test_order_placed_is_fanned_out_to_subscribers(alice, topic, subscribe, settings):
    raw_queue = subscribe(topic, raw=True)
    matching_queue = subscribe(topic, raw=False, filter_policy={"event_type": ["OrderPlaced"]})
    other_queue = subscribe(topic, raw=True, filter_policy={"event_type": ["OrderCancelled"]})
    settings.ORDER_EVENTS_TOPIC_ARN = topic
    ProductFactory(sku="MUG", price=Decimal("12.50"), stock=10)
    ProductFactory(sku="TEA", price=Decimal("3.10"), stock=10)

    response = place(alice, order_body(("MUG", 2), ("TEA", 3), **ADDRESS))
    assert response.status_code == 201, response.json()
    order = Order.objects.get(pk=response.json()["id"])
    assert received(raw_queue) == []  # in the outbox until the relay publishes it
    assert relay_once().by_kind == {"sns_event": 1, "sqs_task": 1}

    [raw] = received(raw_queue)
    event = json.loads(raw["Body"])
    assert set(event) == EVENT_KEYS
    assert event["event_type"] == "OrderPlaced"
    assert event["event_version"] == 1
    assert uuid.UUID(event["event_id"]).version == 4
    assert event["order_id"] == order.pk
    assert event["customer_id"] == order.customer_id != ""
    assert event["lines"] == [
        {
            "sku": "MUG",
            "name": "Product MUG",
            "quantity": 2,
            "unit_price": "12.50",
            "line_total": "25.00",
        },
        {
            "sku": "TEA",
            "name": "Product TEA",
            "quantity": 3,
            "unit_price": "3.10",
            "line_total": "9.30",
        },
    ]
    assert event["total"] == "34.30" == response.json()["total"]
    assert event["currency"] == settings.SHOP_CURRENCY
    assert event["placed_at"].endswith("Z")
    placed_at = datetime.fromisoformat(event["placed_at"])
    assert placed_at.utcoffset() == timedelta(0)
    assert abs(placed_at - order.created_at) < timedelta(milliseconds=1)
    # The attribute subscription filter policies match on, carried into the raw delivery.
    assert raw["MessageAttributes"]["event_type"] == {
        "DataType": "String",
        "StringValue": "OrderPlaced",
    }
    # Nothing about where the customer lives or how to reach them.
    for secret in [*ADDRESS.values(), order.customer_email, "alice@"]:
        if secret != "GB":
            assert secret not in raw["Body"]
    assert not {"shipping_address", "customer_email", "email"} & set(event)

    # The filtered subscriber gets the same publish in SNS's envelope, attribute included.
    [enveloped] = received(matching_queue)
    envelope = json.loads(enveloped["Body"])
    assert envelope["TopicArn"] == topic
    assert json.loads(envelope["Message"]) == event
    assert envelope["MessageAttributes"]["event_type"] == {
        "Type": "String",
        "Value": "OrderPlaced",
    }
    # A subscriber filtering on another event type gets nothing.
    assert received(other_queue) == []


def test_order_placed_event_is_pure_and_converts_to_utc():
    order = Order(
        pk=7,
        customer_id="sub-123",
        customer_email="c@example.com",
        shipping_line1="1 Main St",
        total=Decimal("21.5"),
        currency="EUR",
        created_at=datetime(2025, 3, 1, 1, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2))),
    )
    line = OrderLine(
        sku="MUG", name="Mug", quantity=3, unit_price=Decimal("7.1"), line_total=Decimal("21.3")
    )
    event = events.order_placed_event(order=order, lines=[line], event_id="e-1")
    assert event == {
        "event_type": "OrderPlaced",
        "event_version": 1,
        "event_id": "e-1",
        "order_id": 7,
        "customer_id": "sub-123",
        "lines": [
            {
                "sku": "MUG",
                "name": "Mug",
                "quantity": 3,
                "unit_price": "7.10",
                "line_total": "21.30",
            }
        ],
        "total": "21.50",
        "currency": "EUR",
        "placed_at": "2025-02-28T23:30:15.123Z",
    }
    assert json.loads(json.dumps(event)) == event


def test_fifo_topic_gets_a_group_per_order_and_the_event_id_as_deduplication_id(
    alice, subscribe, settings
):
    topic = aws.client("sns").create_topic(
        Name=f"order-events-{uuid.uuid4().hex[:8]}.fifo", Attributes={"FifoTopic": "true"}
    )["TopicArn"]
    try:
        queue = subscribe(topic, raw=True, fifo=True)
        settings.ORDER_EVENTS_TOPIC_ARN = topic
        ProductFactory(sku="MUG", stock=10)
        response = place(alice, order_body(("MUG", 1)))
        assert response.status_code == 201
        relay_once()
        [message] = received(queue)
        event = json.loads(message["Body"])
        assert event["order_id"] == response.json()["id"]
        assert message["Attributes"]["MessageGroupId"] == f"order-{event['order_id']}"
        assert message["Attributes"]["MessageDeduplicationId"] == event["event_id"]
    finally:
        aws.client("sns").delete_topic(TopicArn=topic)


# --- when nothing is published ------------------------------------------------------------


def test_nothing_is_published_when_the_setting_is_unset(alice, settings, caplog):
    assert settings.ORDER_EVENTS_TOPIC_ARN == ""  # the default
    ProductFactory(sku="MUG", stock=10)
    before = sns_publish_counts()
    with caplog.at_level(logging.DEBUG, logger="orders.events"):
        response = place(alice, order_body(("MUG", 1)))
    assert response.status_code == 201
    assert list(OutboxMessage.objects.values_list("kind", flat=True)) == ["sqs_task"]
    assert relay_once().by_kind == {"sqs_task": 1}  # the confirmation only
    # No SNS publish to any topic of the emulator, and the module was not even called.
    assert sns_publish_counts() == before
    assert not [r for r in caplog.records if r.name == "orders.events"]


def test_a_refused_order_publishes_nothing(alice, topic, subscribe, settings):
    queue = subscribe(topic, raw=True)
    settings.ORDER_EVENTS_TOPIC_ARN = topic
    ProductFactory(sku="MUG", stock=1)
    response = place(alice, order_body(("MUG", 5)))
    assert response.status_code == 409
    assert OutboxMessage.objects.count() == 0
    assert relay_once().claimed == 0
    assert received(queue) == []
    assert sns_publish_counts().get(topic) == 0
    assert Order.objects.count() == 0


def test_an_idempotent_replay_does_not_publish_again(
    api_client, alice_token, topic, subscribe, settings
):
    queue = subscribe(topic, raw=True)
    settings.ORDER_EVENTS_TOPIC_ARN = topic
    ProductFactory(sku="MUG", stock=10)
    headers = auth(alice_token) | {"HTTP_IDEMPOTENCY_KEY": "events-key-1"}
    first = place(api_client, order_body(("MUG", 2)), **headers)
    relay_once()
    again = place(api_client, order_body(("MUG", 2)), **headers)
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert relay_once().claimed == 0  # the replay wrote nothing
    [message] = received(queue)
    assert json.loads(message["Body"])["order_id"] == first.json()["id"]
    assert sns_publish_counts()[topic] == 1


# --- SNS down -----------------------------------------------------------------------------


def test_sns_down_when_the_order_is_placed_delivers_the_event_once_sns_is_back(
    alice, topic, subscribe, settings
):
    """Replaces "the event is lost": at least once now. SNS unreachable when the order is
    placed -> 201 at once (no SNS call in the request) -> the relay cannot publish it (the row
    stays, backing off, the confirmation goes out meanwhile) -> SNS back -> the subscribed
    queue receives the event exactly once."""
    queue = subscribe(topic, raw=True)
    settings.ORDER_EVENTS_TOPIC_ARN = topic
    ProductFactory(sku="MUG", stock=10)
    emulator = settings.AWS_ENDPOINT_URL
    with AwsProxy(emulator) as proxy:
        settings.AWS_ENDPOINT_URL = proxy.url
        proxy.down("sns")
        response = place(alice, order_body(("MUG", 3)))
        assert response.status_code == 201, response.json()
        assert proxy.calls() == {}  # the request called no AWS service at all
        order_id = response.json()["id"]
        assert Product.objects.get(sku="MUG").stock == 7

        counts = relay_once()
        assert counts.by_kind == {"sqs_task": 1}  # the email is not held back by SNS
        [row] = OutboxMessage.objects.all()
        assert row.kind == "sns_event" and row.attempts == 1 and row.last_error
        assert row.payload["message"]["order_id"] == order_id
        assert sns_publish_counts()[topic] == 0

        proxy.up("sns")
        OutboxMessage.objects.update(available_at=None)  # its back-off is over
        assert relay_once().by_kind == {"sns_event": 1}
        assert relay_once().claimed == 0
    settings.AWS_ENDPOINT_URL = emulator
    [message] = received(queue)
    event = json.loads(message["Body"])
    assert event["order_id"] == order_id
    assert event["event_id"] == row.payload["message"]["event_id"]
    assert received(queue) == []
    assert sns_publish_counts()[topic] == 1


# --- cost ---------------------------------------------------------------------------------


def _queries_of_one_placement() -> int:
    sku = ProductFactory(stock=5).sku
    with CaptureQueriesContext(connection) as queries:
        services.order_place(
            customer_id="sub-q",
            customer_email="q@example.com",
            shipping_address=services.ShippingAddress(**ADDRESS),
            lines=[services.LineRequest(sku=sku, quantity=1)],
        )
    return len(queries)


def test_the_event_adds_one_insert_to_order_placement(topic, settings):
    without = _queries_of_one_placement()
    settings.ORDER_EVENTS_TOPIC_ARN = topic
    with_events = _queries_of_one_placement()
    assert with_events == without + 1  # its outbox row, in the order's transaction
    # The relay publishes it without reading anything else: the event was built from memory.
    assert relay_once().by_kind == {"sns_event": 1, "sqs_task": 2}
    assert sns_publish_counts()[topic] == 1


# --- provisioning (the local emulator) ----------------------------------------------------


def test_provisioning_creates_the_topic_and_a_demo_subscriber_once():
    name = f"shop-order-events-{uuid.uuid4().hex[:6]}"
    plan = provisioning.Plan(
        endpoint_url=settings.AWS_ENDPOINT_URL,
        # The session's own resources, as tests/aws_emulator.py provisioned them.
        queue_name=TEST_QUEUE_NAME,
        visibility_timeout=TEST_VISIBILITY_TIMEOUT,
        order_events=True,
        order_events_name=name,
    )
    first = provisioning.provision(plan)
    again = provisioning.provision(plan)
    try:
        assert first.environment()["ORDER_EVENTS_TOPIC_ARN"] == first.order_events_topic_arn
        assert first.order_events_topic_arn.endswith(f":{name}")
        assert any(name in line for line in first.created)
        assert not any(name in line for line in again.created)
        assert again.order_events_topic_arn == first.order_events_topic_arn
        subscriptions = aws.client("sns").list_subscriptions_by_topic(
            TopicArn=first.order_events_topic_arn
        )["Subscriptions"]
        assert len(subscriptions) == 1

        for event_type in ("OrderPlaced", "OrderShipped", "SomethingElse"):
            outbox.outbox_event_add(
                topic_arn=first.order_events_topic_arn,
                message={"event_type": event_type, "order_id": 1, "event_id": "x"},
                attributes={"event_type": event_type},
                deduplication_id="x",
            )
        assert relay_once().by_kind == {"sns_event": 3}
        messages = received(first.order_events_queue_url)
        types = sorted(json.loads(m["Body"])["event_type"] for m in messages)  # raw, filtered
        assert types == ["OrderPlaced", "OrderShipped"]
    finally:
        aws.client("sns").delete_topic(TopicArn=first.order_events_topic_arn)
        aws.client("sqs").delete_queue(QueueUrl=first.order_events_queue_url)
    assert "ORDER_EVENTS_TOPIC_ARN" not in provisioning.Result("q", "d", "p", "c", []).environment()

"""shop.aws.sqs.envelope: the Celery-message-on-SQS format, written and read in one place.

``envelope_encode`` is checked against what ``send_task`` really puts on the emulator's queue
(byte for byte, but for the documented per-send fields), and a real worker consumes a message
written with it and ``SendMessage``.
"""

from __future__ import annotations

import base64
import json
import uuid
from decimal import Decimal

import pytest
from celery import current_app
from django.conf import settings

from notifications.models import OrderEmail
from orders.models import Order
from shop.aws.sqs import envelope
from shop.aws.sqs.envelope import EnvelopeError, envelope_decode, envelope_encode, fifo_fields
from shop.models import OutboxMessage
from tests.factories import ProductFactory
from tests.helpers import auth, order_body
from tests.pipeline import queue_counts, sent_emails, sqs, wait_for

TASK = settings.CONFIRMATION_TASK_NAME


def _received_body(queue_url: str) -> str:
    [message] = sqs().receive_message(QueueUrl=queue_url, WaitTimeSeconds=5)["Messages"]
    return message["Body"]


def _field(payload: dict, path: str):
    for part in path.split("."):
        payload = payload[part]
    return payload


def _outer_text(body: str) -> str:
    # The test's own reading, to compare texts (kombu's SQS transport: base64 of JSON).
    return base64.b64decode(body).decode()


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {"order_id": 41}), ((7,), {}), ((1, "two"), {"three": [3], "ü": "ß"})],
    ids=["kwargs", "args", "both"],
)
def test_encode_is_what_send_task_puts_on_the_queue_byte_for_byte(queues, args, kwargs):
    task_id = str(uuid.uuid4())
    current_app.send_task(
        TASK,
        args=args,
        kwargs=kwargs,
        task_id=task_id,
        queue=settings.ORDER_QUEUE_NAME,
        declare=[],
    )
    real = _received_body(queues.url)
    ours = envelope_encode(task_name=TASK, args=args, kwargs=kwargs, task_id=task_id)

    real_text, our_text = _outer_text(real), _outer_text(ours)
    real_payload, our_payload = json.loads(real_text), json.loads(our_text)
    # The per-send fields: in one process reply_to and origin are the same; only the delivery
    # tag is new per publish. Put ours in place of the real one's, as text, and compare bytes.
    for path in envelope.PER_SEND_FIELDS:
        real_value, our_value = _field(real_payload, path), _field(our_payload, path)
        if real_value != our_value:
            assert path == "properties.delivery_tag", path
            assert real_text.count(json.dumps(real_value)) == 1
            real_text = real_text.replace(json.dumps(real_value), json.dumps(our_value))
    assert our_text == real_text
    assert base64.b64encode(real_text.encode()).decode() == ours


def test_without_a_task_id_only_the_documented_fields_differ(queues):
    current_app.send_task(TASK, kwargs={"order_id": 1}, queue=settings.ORDER_QUEUE_NAME, declare=[])
    real = json.loads(_outer_text(_received_body(queues.url)))
    ours = json.loads(_outer_text(envelope_encode(task_name=TASK, kwargs={"order_id": 1})))
    for path in (*envelope.PER_SEND_FIELDS, *envelope.TASK_ID_FIELDS):
        parent, _, name = path.rpartition(".")
        del _field(real, parent)[name]
        del _field(ours, parent)[name]
    assert ours == real


def test_decode_reads_what_send_task_sends(queues):
    current_app.send_task(
        TASK, args=(3,), kwargs={"x": 1}, task_id="t-1", queue=settings.ORDER_QUEUE_NAME,
        declare=[],
    )  # fmt: skip
    envelope = envelope_decode(_received_body(queues.url))
    assert (envelope.task_name, envelope.task_id, envelope.args, envelope.kwargs) == (
        TASK,
        "t-1",
        (3,),
        {"x": 1},
    )
    assert envelope.retries == 0
    assert envelope.headers["task"] == TASK
    assert envelope.properties["delivery_info"]["routing_key"] == settings.ORDER_QUEUE_NAME


def test_decode_round_trips_encode():
    body = envelope_encode(task_name="some.task", args=(1, 2), kwargs={"k": "v"}, task_id="x")
    envelope = envelope_decode(body)
    assert envelope.task_name == "some.task"
    assert envelope.task_id == "x"
    assert envelope.args == (1, 2)
    assert envelope.kwargs == {"k": "v"}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


_NO_ID = '{"headers": {"task": "t"}, "body": "[[], {}, {}]", "properties": {}}'


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("", "not a Celery message"),
        ("hello", "not a Celery message"),
        (_b64("not json"), "not a Celery message"),
        ("{}", "not a Celery message"),
        ("[1, 2]", "not a Celery message"),
        ('{"headers": {}, "body": "", "properties": {}}', "no task name"),
        ('{"headers": {"task": "t"}, "body": "W10=", "properties": {}}', "malformed task body"),
        (
            '{"headers": {"task": "t"}, "body": "!", "properties": {"body_encoding": "base64"}}',
            "malformed task body",
        ),
        (_NO_ID.replace('"properties": {}', '"properties": 1'), "malformed task body"),
        (_NO_ID, "malformed task headers"),
        ("[" * 100_000, "not a Celery message"),
    ],
)  # fmt: skip
def test_decode_raises_envelope_error_on_anything_else(body, problem):
    with pytest.raises(EnvelopeError) as raised:
        envelope_decode(body)
    assert raised.value.problem == problem
    assert isinstance(raised.value, ValueError)


def test_fifo_fields_only_for_fifo_queues():
    standard = "http://127.0.0.1:1/123456789012/orders"
    assert fifo_fields(queue_url=standard, group_id="7", deduplication_id="d") == {}
    assert fifo_fields(queue_url=f"{standard}.fifo", group_id="7", deduplication_id="d") == {
        "MessageGroupId": "7",
        "MessageDeduplicationId": "d",
    }


@pytest.mark.worker
@pytest.mark.subprocess
@pytest.mark.django_db(transaction=True)
def test_worker_consumes_a_message_written_with_envelope_encode(api_client, alice_token, workers):
    ProductFactory(sku="MUG", price=Decimal("12.50"), stock=10)
    response = api_client.post(
        "/api/orders/", order_body(("MUG", 1)), format="json", **auth(alice_token)
    )
    assert response.status_code == 201, response.content
    order = Order.objects.get(pk=response.json()["id"])
    # The web request's own task (in the outbox) goes: only the one written here may send.
    email_id = order.emails.get().pk  # the task names the email only
    assert OutboxMessage.objects.filter(payload__kwargs__email_id=email_id).delete()[0] == 1
    assert queue_counts(settings.ORDER_QUEUE_URL) == (0, 0)
    before = len(sent_emails("alice@example.com"))

    sqs().send_message(
        QueueUrl=settings.ORDER_QUEUE_URL,
        MessageBody=envelope_encode(task_name=TASK, kwargs={"order_id": order.pk}),
    )
    workers()

    wait_for(
        lambda: OrderEmail.objects.get(order=order).status == "sent",
        timeout=30,
        what="email sent",
    )
    mails = sent_emails("alice@example.com")[before:]
    assert len(mails) == 1
    assert str(order.pk) in mails[0]["raw_data"]

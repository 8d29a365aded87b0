"""A FIFO order queue (ORDER_QUEUE_URL ending in .fifo, its DLQ FIFO too), on the emulator.

The worker's retries, backoff and dead-lettering work as on a standard queue, and the DLQ's
redrive keeps the order's MessageGroupId with a fresh MessageDeduplicationId. The message is
put on the queue the way the outbox relay does: ``envelope_encode`` (in a process whose
settings name the FIFO queue) and a plain ``SendMessage`` with ``fifo_fields``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from django.core.management import call_command

from notifications import dead_letters
from notifications.models import OrderEmail
from orders import services
from orders.models import Order
from shop import aws
from shop.aws.sqs.envelope import envelope_decode, fifo_fields
from tests.factories import ProductFactory
from tests.pipeline import ROOT, queue_counts, sent_emails, sqs, wait_for

MAX_RECEIVE_COUNT = 3
ADDRESS = services.ShippingAddress(
    name="Fi Fo", line1="1 Queue St", city="Springfield", postal_code="1", country="US"
)


def _order(email: str) -> Order:
    product = ProductFactory(stock=10)
    return services.order_place(
        customer_id=f"c-{uuid.uuid4().hex[:8]}",
        customer_email=email,
        shipping_address=ADDRESS,
        lines=[services.LineRequest(sku=product.sku, quantity=1)],
    )


def _encode_as_the_relay(queue_url: str, order_id: int) -> str:
    """The body a process configured for the FIFO queue writes (its routing key included)."""
    script = (
        "import django; django.setup(); from django.conf import settings; "
        "from shop.aws.sqs.envelope import envelope_encode; "
        "print(envelope_encode(task_name=settings.CONFIRMATION_TASK_NAME, "
        f"kwargs={{'order_id': {order_id}}}))"
    )
    return _in_a_fifo_process(queue_url, script).strip().splitlines()[-1]


def _in_a_fifo_process(queue_url: str, script: str) -> str:
    """Run ``script`` in a Django process whose order queue is ``queue_url``; its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "shop.settings.test",
            "ORDER_QUEUE_URL": queue_url,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _dlq_messages(dlq_url: str) -> list[dict]:
    response = sqs().receive_message(
        QueueUrl=dlq_url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=0,
        VisibilityTimeout=0,
        MessageSystemAttributeNames=["All"],
    )
    return response.get("Messages", [])


def test_provision_aws_fifo_creates_a_fifo_pair(tmp_path):
    env_file = tmp_path / "fifo.env"
    call_command("provision_aws", "--fifo", "--env-file", str(env_file))
    environment = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    url = environment["ORDER_QUEUE_URL"]
    assert url.endswith(".fifo")
    attributes = sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["FifoQueue"] == "true"
    dlq_arn = json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"]
    assert dlq_arn.endswith("-dlq.fifo")


@pytest.mark.worker
@pytest.mark.subprocess
@pytest.mark.django_db(transaction=True)
def test_fifo_retries_dead_letters_and_redrive_bring_it_back(fifo_queues, workers, settings):
    url, dlq_url = fifo_queues
    address = f"fifo-{uuid.uuid4().hex[:8]}@example.com"  # not verified: the sandbox refuses
    order = _order(address)
    failing = workers("failing", ORDER_QUEUE_URL=url)

    body = _encode_as_the_relay(url, order.pk)
    assert envelope_decode(body).properties["delivery_info"]["routing_key"] == "orders.fifo"
    deduplication_id = f"outbox-{uuid.uuid4().hex}"
    fields = fifo_fields(queue_url=url, group_id=str(order.pk), deduplication_id=deduplication_id)
    assert set(fields) == {"MessageGroupId", "MessageDeduplicationId"}
    sqs().send_message(QueueUrl=url, MessageBody=body, **fields)

    wait_for(lambda: queue_counts(dlq_url)[0] == 1, timeout=60, what="message in the FIFO DLQ")
    notification = OrderEmail.objects.get(order=order)
    assert notification.status == "failed"
    assert notification.attempts == MAX_RECEIVE_COUNT
    log = failing.text()
    for attempt in range(1, MAX_RECEIVE_COUNT + 1):
        assert f"confirmation order={order.pk} attempt={attempt} outcome=failed" in log
    assert f"attempt={MAX_RECEIVE_COUNT + 1}" not in log
    assert queue_counts(url) == (0, 0)
    [dead] = _dlq_messages(dlq_url)
    assert dead["Body"] == body
    assert dead["Attributes"]["MessageGroupId"] == str(order.pk)
    assert dead["Attributes"]["MessageDeduplicationId"] == deduplication_id
    failing.stop()

    # Redrive (the admin's and dlq_redrive's service) against the FIFO pair; a copy must keep
    # the group and carry a new deduplication id.
    settings.ORDER_QUEUE_URL = url
    copies: list[dict] = []
    aws.client("sqs").meta.events.register(
        "before-parameter-build.sqs.SendMessage",
        lambda params, **_: copies.append(dict(params)),
        unique_id="test-fifo-redrive-spy",
    )
    ses = aws.client("ses")
    ses.verify_email_identity(EmailAddress=address)
    try:
        workers("rescuer", ORDER_QUEUE_URL=url)
        result = dead_letters.dlq_redrive(message_ids=[dead["MessageId"]], actor="tester")
        assert (result.done, result.failed) == (1, 0)
        wait_for(
            lambda: OrderEmail.objects.get(order=order).status == "sent",
            timeout=30,
            what="the redriven email sent",
        )
    finally:
        aws.client("sqs").meta.events.unregister(
            "before-parameter-build.sqs.SendMessage", unique_id="test-fifo-redrive-spy"
        )
        ses.delete_identity(Identity=address)
    [copy] = [c for c in copies if c["QueueUrl"] == url]
    assert copy["MessageBody"] == body
    assert copy["MessageGroupId"] == str(order.pk)
    assert copy["MessageDeduplicationId"] not in ("", deduplication_id)
    assert len(sent_emails(address)) == 1
    assert queue_counts(dlq_url) == (0, 0)
    wait_for(lambda: queue_counts(url) == (0, 0), timeout=15, what="the FIFO queue empty")


@pytest.mark.worker
@pytest.mark.subprocess
@pytest.mark.django_db(transaction=True)
def test_kombu_publish_to_a_fifo_queue_names_the_order_as_group(fifo_queues, workers):
    """shop.aws.sqs.publish (send_task) in a FIFO process: MessageGroupId = the order."""
    url, _ = fifo_queues
    order = _order("alice@example.com")
    # The web request's publish went to this process's (standard) queue: a FIFO process now.
    script = (
        "import django; django.setup(); "
        "from shop.aws.sqs import confirmation_enqueue; "
        f"confirmation_enqueue(order_id={order.pk})"
    )
    _in_a_fifo_process(url, script)
    [message] = sqs().receive_message(
        QueueUrl=url, WaitTimeSeconds=5, VisibilityTimeout=0, MessageSystemAttributeNames=["All"]
    )["Messages"]
    assert message["Attributes"]["MessageGroupId"] == str(order.pk)
    assert envelope_decode(message["Body"]).kwargs == {"order_id": order.pk}

    before = len(sent_emails("alice@example.com"))
    workers(ORDER_QUEUE_URL=url)
    wait_for(
        lambda: OrderEmail.objects.get(order=order).status == "sent",
        timeout=30,
        what="email sent from the FIFO queue",
    )
    assert len(sent_emails("alice@example.com")) == before + 1

"""Operating the dead-letter queue: listing, redriving, deleting; services and commands.

Everything runs against the session's emulator. DLQ messages are the app's real Celery
messages, either failed into the DLQ by a real worker or moved there straight
(``tests.pipeline.dead_letter``), plus poison bodies sent as anything with access could.
"""

from __future__ import annotations

import json
import uuid
from io import StringIO

import pytest
from botocore.awsrequest import AWSResponse
from django.conf import settings
from django.core.management import CommandError, call_command

from notifications import dead_letters
from notifications.models import EmailEvent, EmailEventKind, EmailStatus, OrderEmail
from orders import services as order_services
from orders.models import Order
from shop import aws
from shop.aws import sqs as queue
from shop.aws.sqs.envelope import envelope_encode
from tests.factories import ProductFactory
from tests.pipeline import (
    DLQ_URL,
    dead_letter,
    free_port,
    queue_counts,
    sent_emails,
    sqs,
    wait_for,
)

ADDRESS = order_services.ShippingAddress(
    name="Carol Example", line1="1 Main St", city="Springfield", postal_code="1", country="US"
)


def _order(email: str | None = None) -> Order:
    product = ProductFactory(stock=10)
    return order_services.order_place(
        customer_id=f"c-{uuid.uuid4().hex[:8]}",
        customer_email=email or f"carol-{uuid.uuid4().hex[:8]}@example.com",
        shipping_address=ADDRESS,
        lines=[order_services.LineRequest(sku=product.sku, quantity=1)],
    )


def _failed_order(error: str = "recipient not verified in the SES sandbox") -> Order:
    order = _order()
    OrderEmail.objects.filter(order=order).update(
        status=EmailStatus.FAILED, attempts=3, last_error=error
    )
    return order


def _poison(body: str = "") -> str:
    body = body or f"not a celery message {uuid.uuid4().hex}"
    return sqs().send_message(QueueUrl=DLQ_URL, MessageBody=body)["MessageId"]


def _dlq_ids() -> set[str]:
    return {row.message_id for row in dead_letters.dlq_list(limit=100)}


def _events(order: Order, kind: str) -> list[EmailEvent]:
    return list(EmailEvent.objects.filter(notification__order=order, kind=kind))


@pytest.fixture
def sqs_down(settings):
    """SQS's endpoint is a closed loopback port (boto3 clients are cached per endpoint)."""
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def fresh_move_task_memory(monkeypatch):
    """A new process: it does not know yet whether the endpoint has StartMessageMoveTask."""
    monkeypatch.setattr(queue.dlq, "_move_task_unsupported", set())


# --- looking ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_dlq_list_shows_orders_and_poison_and_leaves_them_in_the_queue(
    queues, django_assert_num_queries
):
    order = _failed_order()
    dead_id = dead_letter(order.pk)
    poison_id = _poison()

    with django_assert_num_queries(1):  # one query for all rows' email records
        rows = {row.message_id: row for row in dead_letters.dlq_list(limit=10)}

    assert set(rows) == {dead_id, poison_id}
    row = rows[dead_id]
    assert row.order_id == order.pk
    assert row.task == settings.CONFIRMATION_TASK_NAME
    assert row.problem == ""
    assert row.customer_email == order.customer_email
    assert row.email_status == "failed"
    assert row.last_error == "recipient not verified in the SES sandbox"
    assert row.receive_count >= 1
    assert row.first_seen is not None and row.sent_at is not None
    poison = rows[poison_id]
    assert poison.order_id is None
    assert poison.problem == "not a Celery message"
    assert poison.customer_email == ""
    # Both are back in the DLQ at once, and a second look finds them again.
    assert queue_counts(DLQ_URL) == (2, 0)
    assert _dlq_ids() == {dead_id, poison_id}


@pytest.mark.django_db
def test_dlq_list_limit_and_an_order_that_no_longer_exists(queues):
    order = _order()
    dead_letter(order.pk)
    dead_letter(_order().pk)
    order_id = order.pk
    order.delete()

    assert len(dead_letters.dlq_list(limit=1)) == 1
    rows = dead_letters.dlq_list(limit=10)
    assert len(rows) == 2
    missing = next(row for row in rows if row.order_id == order_id)
    assert missing.problem == "no such order"


def test_message_decode_reads_celery_messages_and_describes_the_rest():
    assert queue.message_decode("{}").problem == "not a Celery message"
    assert queue.message_decode("bm90IGpzb24=").problem == "not a Celery message"
    poison = {"headers": {"task": "other.task"}, "body": "W10=", "properties": {}}
    assert queue.message_decode(json.dumps(poison)) == queue.DecodedMessage(
        "other.task", None, "malformed task body"
    )
    assert queue.message_decode(
        envelope_encode(task_name="other.task", kwargs={"order_id": 7})
    ) == queue.DecodedMessage("other.task", None, "not an email task")
    task = settings.CONFIRMATION_TASK_NAME
    assert queue.message_decode(envelope_encode(task_name=task, kwargs={"order_id": 7})) == (
        queue.DecodedMessage(task, 7)
    )
    assert queue.message_decode(envelope_encode(task_name=task, args=(8,))).order_id == 8
    no_id = envelope_encode(task_name=task, kwargs={"order_id": True})
    assert queue.message_decode(no_id).problem == "no order id"
    email_task = settings.EMAIL_TASK_NAME
    assert queue.message_decode(
        envelope_encode(task_name=email_task, kwargs={"email_id": 9})
    ) == queue.DecodedMessage(email_task, None, email_id=9)
    no_email = envelope_encode(task_name=email_task, kwargs={"email_id": "9"})
    assert queue.message_decode(no_email).problem == "no email id"


@pytest.mark.django_db
def test_queue_stats_reads_both_queues(queues):
    dead_letter(_order().pk)
    _poison()

    orders, dlq = queue.queue_stats()
    assert (orders.role, orders.url) == ("orders", settings.ORDER_QUEUE_URL)
    assert orders.dlq_url == DLQ_URL
    assert orders.max_receive_count == 3
    assert orders.visibility_timeout == queues.visibility_timeout == 2  # tests/aws_emulator.py
    assert orders.oldest_age_seconds is None  # not in SQS's API (CloudWatch only)
    assert (dlq.role, dlq.url, dlq.name) == ("dead-letter", DLQ_URL, DLQ_URL.rsplit("/", 1)[1])
    assert (dlq.visible, dlq.in_flight, dlq.delayed) == (2, 0, 0)
    assert dlq.retention_seconds == 14 * 24 * 3600
    assert dlq.max_receive_count is None and dlq.dlq_url is None


# --- redriving ----------------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.subprocess
@pytest.mark.django_db(transaction=True)
def test_redriven_message_is_sent_by_the_worker_once_the_address_is_verified(workers):
    address = f"dana-{uuid.uuid4().hex[:8]}@example.com"
    ses = aws.client("ses")
    first = workers("failing")
    order = _order(address)  # published on commit; the sandbox refuses the unverified address
    wait_for(lambda: queue_counts(DLQ_URL)[0] == 1, timeout=60, what="message in the DLQ")
    notification = OrderEmail.objects.get(order=order)
    assert notification.status == "failed"
    assert "not verified" in notification.last_error
    [row] = dead_letters.dlq_list(limit=10)
    assert (row.order_id, row.customer_email, row.email_status) == (order.pk, address, "failed")
    assert row.receive_count >= 3
    first.stop()

    ses.verify_email_identity(EmailAddress=address)
    try:
        workers("rescuer")
        progress = []
        result = dead_letters.dlq_redrive(
            actor="tester", progress=lambda *args: progress.append(args)
        )
        assert (result.done, result.failed, result.not_found, result.ok) == (1, 0, 0, True)
        assert progress == [(row.message_id, order.pk, "moved", "")]
        wait_for(
            lambda: OrderEmail.objects.get(order=order).status == "sent",
            timeout=30,
            what="the redriven email sent",
        )
    finally:
        ses.delete_identity(Identity=address)
    assert len(sent_emails(address)) == 1
    assert queue_counts(DLQ_URL) == (0, 0)
    [event] = _events(order, EmailEventKind.REDRIVEN)
    assert event.actor == "tester"
    assert row.message_id in event.detail
    order.refresh_from_db()
    assert order.status == "confirmed"


@pytest.fixture
def small_order_queue():
    """``shrink()``: the order queue then takes only 1 KiB messages, so sending it a real
    Celery message fails. Put back as it was after the test."""
    client = sqs()
    url = settings.ORDER_QUEUE_URL
    before = client.get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])
    yield lambda: client.set_queue_attributes(
        QueueUrl=url, Attributes={"MaximumMessageSize": "1024"}
    )
    client.set_queue_attributes(QueueUrl=url, Attributes=before["Attributes"])


@pytest.mark.django_db
def test_a_failed_send_leaves_the_message_in_the_dlq(queues, small_order_queue):
    order = _failed_order()
    dead_id = dead_letter(order.pk)
    small_id = _poison("tiny")
    sizes = {letter.message_id: len(letter.body) for letter in queue.dlq_peek(limit=10)}
    assert sizes[dead_id] > 1024 > sizes[small_id]
    small_order_queue()

    result = dead_letters.dlq_redrive(limit=10, actor="tester")

    assert (result.done, result.failed, result.ok) == (1, 1, False)
    [(failed_id, reason)] = result.failures
    assert failed_id == dead_id
    assert "not sent to the order queue" in reason and "InvalidParameterValue" in reason
    assert _dlq_ids() == {dead_id}  # still there, visible again at once
    assert queue_counts(settings.ORDER_QUEUE_URL)[0] == 1  # the small one moved
    assert _events(order, EmailEventKind.REDRIVEN) == []
    assert small_id not in _dlq_ids()


@pytest.mark.django_db
def test_redrive_by_message_id_and_by_limit(queues):
    orders = [_order() for _ in range(3)]
    ids = [dead_letter(order.pk) for order in orders]

    result = dead_letters.dlq_redrive(message_ids=[ids[0], "no-such-message"], actor="tester")
    assert (result.done, result.failed, result.not_found) == (1, 0, 1)
    assert _dlq_ids() == set(ids[1:])
    assert len(_events(orders[0], EmailEventKind.REDRIVEN)) == 1
    assert _events(orders[1], EmailEventKind.REDRIVEN) == []

    result = dead_letters.dlq_redrive(limit=1)
    assert (result.done, result.failed, result.not_found) == (1, 0, 0)
    assert len(_dlq_ids()) == 1
    assert queue_counts(settings.ORDER_QUEUE_URL)[0] == 2
    # The copies on the order queue are the app's messages, for the right orders.
    copies = sqs().receive_message(
        QueueUrl=settings.ORDER_QUEUE_URL, MaxNumberOfMessages=10, VisibilityTimeout=0
    )["Messages"]
    redriven = {queue.message_decode(m["Body"]).order_id for m in copies}
    assert orders[0].pk in redriven and len(redriven) == 2


@pytest.mark.django_db
def test_redrive_all_tries_the_move_task_once_per_process(queues, fresh_move_task_memory):
    """moto has no StartMessageMoveTask (HTTP 500): one request, no retries, then by hand."""
    attempts = []
    client = aws.client("sqs")
    count = lambda **kwargs: attempts.append(1)  # noqa: E731
    client.meta.events.register("before-send.sqs.StartMessageMoveTask", count)
    try:
        dead_letter(_order().pk)
        _poison()
        result = dead_letters.dlq_redrive()
        assert (result.done, result.failed, result.task_handle) == (2, 0, None)
        assert len(attempts) == 1  # botocore did not retry the 500
        assert not queue.dlq_move_task_available()

        dead_letter(_order().pk)
        assert dead_letters.dlq_redrive().done == 1
        assert len(attempts) == 1  # remembered: not asked again
    finally:
        client.meta.events.unregister("before-send.sqs.StartMessageMoveTask", count)
    assert queue_counts(DLQ_URL) == (0, 0)
    assert queue_counts(settings.ORDER_QUEUE_URL)[0] == 3


@pytest.mark.django_db
def test_redrive_all_uses_the_move_task_where_sqs_has_one(queues, fresh_move_task_memory):
    """Real SQS's StartMessageMoveTask cannot run on the emulator: only its answer is given."""
    requests = []

    def answer(params, **kwargs):
        requests.append(json.loads(params["body"]))
        return AWSResponse(params["url"], 200, {}, None), {"TaskHandle": "task-1"}

    order = _failed_order()
    dead_letter(order.pk)
    client = aws.client("sqs")
    client.meta.events.register_first("before-call.sqs.StartMessageMoveTask", answer)
    try:
        result = dead_letters.dlq_redrive(actor="tester")
    finally:
        client.meta.events.unregister("before-call.sqs.StartMessageMoveTask", answer)
    [request] = requests
    dlq_arn = sqs().get_queue_attributes(QueueUrl=DLQ_URL, AttributeNames=["QueueArn"])
    orders_arn = sqs().get_queue_attributes(
        QueueUrl=settings.ORDER_QUEUE_URL, AttributeNames=["QueueArn"]
    )
    assert request == {
        "SourceArn": dlq_arn["Attributes"]["QueueArn"],
        "DestinationArn": orders_arn["Attributes"]["QueueArn"],
    }
    assert (result.task_handle, result.done) == ("task-1", 1)
    assert len(_events(order, EmailEventKind.REDRIVEN)) == 1
    assert queue.dlq_move_task_available()


# --- deleting -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_delete_by_message_id(queues):
    order, other = _failed_order(), _failed_order()
    dead_id, other_id = dead_letter(order.pk), dead_letter(other.pk)
    poison_id = _poison()

    result = dead_letters.dlq_delete(
        message_ids=[dead_id, poison_id, "no-such-message"], actor="admin"
    )

    assert (result.done, result.failed, result.not_found) == (2, 0, 1)
    assert _dlq_ids() == {other_id}
    [event] = _events(order, EmailEventKind.DELETED)
    assert event.actor == "admin" and dead_id in event.detail
    assert _events(other, EmailEventKind.DELETED) == []
    assert OrderEmail.objects.get(order=order).status == "failed"  # left as it was


# --- SQS down -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_sqs_down_is_a_clean_error(queues, sqs_down):
    with pytest.raises(queue.QueueUnavailable, match="SQS GetQueueAttributes"):
        dead_letters.dlq_list(limit=10)
    with pytest.raises(queue.QueueUnavailable):
        dead_letters.dlq_redrive(message_ids=["x"])
    with pytest.raises(queue.QueueUnavailable):
        dead_letters.queue_health()
    for command, args in [
        ("queue_stats", []),
        ("dlq_list", []),
        ("dlq_redrive", []),
        ("dlq_delete", ["--message-id", "x", "--yes"]),
    ]:
        with pytest.raises(CommandError, match="SQS cannot be reached"):
            call_command(command, *args, stdout=StringIO())


# --- commands -----------------------------------------------------------------------------


def _run(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command(*args, stdout=out, stderr=out)
    except SystemExit as exc:
        return int(exc.code), out.getvalue()
    return 0, out.getvalue()


@pytest.mark.django_db
def test_queue_stats_and_dlq_list_commands(queues):
    order = _failed_order("SES said no")
    dead_id = dead_letter(order.pk)
    poison_id = _poison()

    status, out = _run("queue_stats")
    assert status == 0
    assert f"orders: {settings.ORDER_QUEUE_URL.rsplit('/', 1)[1]}" in out
    assert f"dead-letter: {DLQ_URL.rsplit('/', 1)[1]}" in out
    assert f"to {DLQ_URL} after 3 receives" in out

    status, out = _run("dlq_list", "--limit", "10")
    assert status == 0
    assert f"{dead_id}  order {order.pk}  {order.customer_email}" in out
    assert "last error: SES said no" in out
    assert f"{poison_id}  no order" in out and "problem: not a Celery message" in out
    assert "2 message(s)" in out


@pytest.mark.django_db
def test_dlq_redrive_command_reports_each_message_and_fails_on_failure(queues, small_order_queue):
    order = _failed_order()
    dead_id = dead_letter(order.pk)
    small_order_queue()

    status, out = _run("dlq_redrive")
    assert status == 1
    assert f"{dead_id} (order {order.pk}): failed: not sent to the order queue" in out
    assert "moved 0, failed 1, not found 0" in out
    assert _dlq_ids() == {dead_id}

    sqs().set_queue_attributes(
        QueueUrl=settings.ORDER_QUEUE_URL, Attributes={"MaximumMessageSize": "262144"}
    )
    status, out = _run("dlq_redrive", "--message-id", dead_id)
    assert status == 0, out
    assert f"{dead_id} (order {order.pk}): moved" in out
    assert "moved 1, failed 0, not found 0" in out
    assert _dlq_ids() == set()
    assert _events(order, EmailEventKind.REDRIVEN)[0].actor == "manage.py dlq_redrive"


@pytest.mark.django_db
def test_dlq_delete_command_asks_first(queues, monkeypatch):
    order = _failed_order()
    dead_id = dead_letter(order.pk)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")  # the operator says no

    with pytest.raises(CommandError, match="nothing was deleted"):
        call_command("dlq_delete", "--message-id", dead_id, stdout=StringIO())
    assert _dlq_ids() == {dead_id}

    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    status, out = _run("dlq_delete", "--message-id", dead_id)
    assert status == 0, out
    assert f"{dead_id} (order {order.pk}): deleted" in out
    assert _dlq_ids() == set()

    status, out = _run("dlq_delete", "--message-id", dead_id, "--yes")
    assert status == 1  # not there any more
    assert "deleted 0, failed 0, not found 1" in out

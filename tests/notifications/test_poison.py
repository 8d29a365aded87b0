"""Poison messages never block or crash the worker, and never vanish.

Each test puts raw messages on the order queue with ``send_message``, as anything with
access to the queue could, then places a valid order through the API. The order must be
confirmed while the poison is being rejected, and each poison message must end in the
dead-letter queue after maxReceiveCount (3) receives, unchanged, with an ERROR line per
receive. A message for an order that does not exist is the exception: it is deleted, loudly.
"""

from __future__ import annotations

import base64
import json
import uuid
from decimal import Decimal

import pytest
from django.conf import settings

from notifications.models import OrderEmail
from shop.aws.sqs.envelope import envelope_encode, envelope_replace
from tests.factories import ProductFactory
from tests.helpers import auth, order_body
from tests.pipeline import Worker, dlq_bodies, queue_counts, sqs, wait_for

pytestmark = [
    pytest.mark.worker,
    pytest.mark.subprocess,
    pytest.mark.django_db(transaction=True),
    # Rejected poison waits out the visibility timeout between receives: the shortest one.
    pytest.mark.visibility_timeout(1),
]


MAX_RECEIVE_COUNT = 3
# Poison messages without the confirmation task's name wait out the queue's visibility
# timeout (1 s here) between receives; SQS moves them on the 4th receive.
DLQ_TIMEOUT = 50


def _b64(text: str) -> str:
    """Base64 of text that is no Celery message at all (kombu reads base64 bodies first)."""
    return base64.b64encode(text.encode()).decode()


def _task_message(task: str, **kwargs) -> str:
    """A well-formed confirmation-shaped task message, as the app publishes it."""
    return envelope_encode(task_name=task, kwargs=kwargs)


def _kombu_message(
    task_body: str, *, headers: dict | None = None, routing_key: str | None = None
) -> str:
    """A real kombu message whose task body (and headers, routing key) are replaced."""
    return envelope_replace(
        _task_message(settings.CONFIRMATION_TASK_NAME),
        task_body=task_body,
        headers=headers,
        routing_key=routing_key,
    )


def _send(body: str) -> str:
    return sqs().send_message(QueueUrl=settings.ORDER_QUEUE_URL, MessageBody=body)["MessageId"]


def _confirm_an_order(api_client, token: str) -> None:
    """A valid order placed after the poison message is still confirmed."""
    ProductFactory(sku="MUG", price=Decimal("12.50"), stock=10)
    response = api_client.post("/api/orders/", order_body(("MUG", 1)), format="json", **auth(token))
    assert response.status_code == 201, response.content
    order_id = response.json()["id"]
    wait_for(
        lambda: OrderEmail.objects.get(order_id=order_id).status == "sent",
        timeout=30,
        what="the valid order's email sent",
    )


def _assert_alive(worker: Worker) -> None:
    assert worker.process.poll() is None, worker.text()[-3000:]
    assert "Unrecoverable error" not in worker.text()


def _token() -> str:
    return uuid.uuid4().hex


POISON = {
    # (a) neither base64 nor JSON
    "not json": lambda: f"hello {_token()}",
    # (b) base64 (kombu decodes it) of something that is not JSON
    "base64, not json": lambda: _b64(f"this is not json {_token()}"),
    # (c) JSON, but no Celery message; raw and base64-encoded
    "json, not celery": lambda: json.dumps({"foo": _token()}),
    "base64 json, not celery": lambda: _b64(json.dumps({"foo": _token()})),
    # (d) a well-formed Celery message for a task no worker has
    "unknown task": lambda: _task_message("notifications.no_such_task", order_id=1),
    # a Celery message whose body does not decode: stock Celery acknowledged (deleted) it
    "undecodable task body": lambda: _kombu_message(f"{{not json {_token()}"),
    # a Celery message whose body is JSON of the wrong shape: stock Celery's worker stopped
    "malformed task body": lambda: _kombu_message(json.dumps({"order_id": _token()})),
}


@pytest.mark.parametrize("make_poison", POISON.values(), ids=POISON.keys())
def test_poison_message_ends_in_the_dlq(api_client, alice_token, workers, make_poison):
    worker = workers()
    poison = make_poison()
    message_id = _send(poison)

    _confirm_an_order(api_client, alice_token)

    wait_for(lambda: poison in dlq_bodies(), timeout=DLQ_TIMEOUT, what="poison in the DLQ")
    assert queue_counts(settings.ORDER_QUEUE_URL) == (0, 0)
    log = worker.text()
    for attempt in range(1, MAX_RECEIVE_COUNT + 1):
        assert (
            f"ERROR shop.aws.sqs.transport poison message id={message_id} attempt={attempt} " in log
        )
    assert f"attempt={MAX_RECEIVE_COUNT + 1} " not in log
    _assert_alive(worker)


def test_broken_kombu_messages_end_in_the_dlq(api_client, alice_token, workers):
    """Stock Celery deleted the first of these, and each of the others stopped the worker."""
    worker = workers()
    poisons = {
        "undecodable body, no task": _kombu_message(f"{{not json {_token()}", headers={}),
        "properties not a dict": json.dumps({"properties": 1, "id": _token()}),
        "delivery_info not a dict": json.dumps(
            {"properties": {"delivery_info": 5}, "id": _token()}
        ),
        "body not base64": json.dumps(
            {"body": f"!{_token()}", "properties": {"body_encoding": "base64"}}
        ),
        "headers not a dict": json.dumps({"body": "e30=", "headers": _token(), "properties": {}}),
        "routed to a queue that is not predefined": envelope_replace(
            _task_message(settings.CONFIRMATION_TASK_NAME, order_id=10**9),
            routing_key="elsewhere",
        ),
        "task but no body": json.dumps(
            {"headers": {"task": settings.CONFIRMATION_TASK_NAME, "id": _token()}, "properties": {}}
        ),
    }
    message_ids = {name: _send(poison) for name, poison in poisons.items()}

    _confirm_an_order(api_client, alice_token)

    wait_for(
        lambda: set(poisons.values()) <= set(dlq_bodies()),
        timeout=DLQ_TIMEOUT,
        what="every poison message in the DLQ",
    )
    assert queue_counts(settings.ORDER_QUEUE_URL) == (0, 0)
    for name, message_id in message_ids.items():
        line = f"poison message id={message_id} attempt={MAX_RECEIVE_COUNT} "
        assert line in worker.text(), name
    _assert_alive(worker)


def test_confirmation_for_a_missing_order_is_deleted_with_an_error(
    api_client, alice_token, workers
):
    worker = workers()
    missing_order_id = 10**9
    poison = _task_message(settings.CONFIRMATION_TASK_NAME, order_id=missing_order_id)
    _send(poison)

    _confirm_an_order(api_client, alice_token)

    dropped = (
        f"ERROR notifications.tasks confirmation order={missing_order_id} attempt=1 "
        "outcome=dropped reason=no such order"
    )
    wait_for(lambda: dropped in worker.text(), timeout=30, what="the order dropped, loudly")
    wait_for(
        lambda: queue_counts(settings.ORDER_QUEUE_URL) == (0, 0), timeout=15, what="queue empty"
    )
    assert poison not in dlq_bodies()
    assert f"order={missing_order_id} attempt=2" not in worker.text()
    _assert_alive(worker)

"""A pool child killed while it sends: a failed attempt, nothing more.

The fault is injected from outside, as production meets it: a proxy in front of the
emulator's SES (``tests.aws_proxy``) holds the worker's SendRawEmail *before* forwarding it,
the test finds the pool child that owns that connection and SIGKILLs it (as the OOM killer
would), and the proxy drops the request of the dead sender, so SES never received it. Then
only the outside is watched: the queue's and the DLQ's counts (visible, in flight, delayed)
all along, the emulator's sent mail, the worker's process and its log.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import uuid

import pytest
from django.conf import settings

from notifications.models import OrderEmail
from orders import services
from orders.models import Order
from shop.aws.sqs.envelope import Envelope
from tests.aws_proxy import AwsProxy
from tests.factories import ProductFactory
from tests.faults import DepthSampler, sender_pid
from tests.pipeline import DLQ_URL, dlq_messages, sent_emails, sqs, task_order_id, wait_for

pytestmark = [
    pytest.mark.worker,
    pytest.mark.subprocess,
    pytest.mark.django_db(transaction=True),
]

MAX_RECEIVE_COUNT = 3
ADDRESS = services.ShippingAddress(
    name="Lost Child", line1="1 Main St", city="Town", postal_code="1", country="US"
)


def _order(email: str) -> Order:
    ProductFactory(sku="MUG", stock=10)
    return services.order_place(
        customer_id=email,
        customer_email=email,
        shipping_address=ADDRESS,
        lines=[services.LineRequest(sku="MUG", quantity=1)],
    )


def _kill_the_sender(proxy: AwsProxy, worker, n: int) -> int:
    """Wait for the n-th (0-based) held send, SIGKILL the pool child that made it, and wait
    until the proxy has dropped it (never forwarded). Returns the killed PID."""
    peer = wait_for(
        lambda: len(proxy.held_peers) > n and proxy.held_peers[n],
        timeout=30,
        what=f"send #{n + 1} held at the proxy",
        every=0.02,
    )
    pid = wait_for(
        lambda: sender_pid(worker.process.pid, peer[1]), timeout=5, what="the sending process"
    )
    assert pid != worker.process.pid  # a pool child, not the worker's main process
    os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: sum(send.outcome == "dropped" for send in proxy.sends()) == n + 1,
        timeout=10,
        what="the dead sender's request dropped",
        every=0.02,
    )
    return pid


def _always_exactly_one(depths: DepthSampler) -> list[int]:
    """The totals (queue + DLQ) over time, run-length compressed: 0 before the publish, then
    1, in the queue or the DLQ, and 0 only once the worker deleted it."""
    totals = [key for key, _ in itertools.groupby(depth.total for depth in depths.samples)]
    assert max(totals) == 1, f"more than one message at some moment: {totals}"
    assert totals in ([1], [0, 1], [1, 0], [0, 1, 0]), totals
    return totals


def _peek(queue_url: str) -> list[dict]:
    """The queue's messages with their SQS MessageId, left in the queue."""
    response = sqs().receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=0
    )
    return response.get("Messages", [])


def _order_of(message: Envelope) -> int:
    return task_order_id(message.args, message.kwargs)


@pytest.mark.parametrize("kills", [1, 2], ids=["killed once", "killed twice in a row"])
def test_a_pool_child_killed_mid_send_is_a_failed_attempt_and_the_email_goes_out_once(
    workers, kills
):
    recipient = f"lost-child-{uuid.uuid4().hex[:8]}@example.com"
    with (
        AwsProxy(settings.AWS_SES_ENDPOINT_URL) as proxy,
        DepthSampler(settings.ORDER_QUEUE_URL, DLQ_URL) as depths,
    ):
        proxy.hold("SendRawEmail")
        worker = workers(SES_SANDBOX="false", AWS_ENDPOINT_URL_SES=proxy.url)
        order = _order(recipient)
        killed = [_kill_the_sender(proxy, worker, n) for n in range(kills)]
        proxy.release()  # the next delivery's send goes through
        wait_for(
            lambda: OrderEmail.objects.get(order=order).status == "sent",
            timeout=60,
            what="email sent after the lost attempts",
        )
        wait_for(lambda: depths.samples[-1].total == 0, timeout=30, what="message deleted")

    assert len(set(killed)) == kills  # a new pool child each time
    assert worker.process.poll() is None, "the worker's main process died"
    log = worker.text()
    assert "Unrecoverable error" not in log
    for attempt in range(1, kills + 1):
        assert f"attempt={attempt} task={settings.EMAIL_TASK_NAME} outcome=requeued" in log
    assert f"confirmation order={order.pk} attempt={kills + 1} outcome=sent" in log
    assert len(set(re.findall(r"returned message id=(\S+) attempt=", log))) == 1
    # Never re-sent: one message, in flight or waiting out its backoff, at every moment.
    _always_exactly_one(depths)
    assert [send.outcome for send in proxy.sends()] == ["dropped"] * kills + ["forwarded"]
    assert len(sent_emails(recipient)) == 1


def test_a_message_that_kills_its_child_on_every_delivery_ends_in_the_dlq(workers):
    recipient = f"child-killer-{uuid.uuid4().hex[:8]}@example.com"
    with (
        AwsProxy(settings.AWS_SES_ENDPOINT_URL) as proxy,
        DepthSampler(settings.ORDER_QUEUE_URL, DLQ_URL) as depths,
    ):
        proxy.hold("SendRawEmail")
        worker = workers(SES_SANDBOX="false", AWS_ENDPOINT_URL_SES=proxy.url)
        order = _order(recipient)
        for n in range(MAX_RECEIVE_COUNT):
            _kill_the_sender(proxy, worker, n)
        # SQS moves it on the receive after the maxReceiveCount-th; the worker never sees it.
        dead = wait_for(lambda: dlq_messages(DLQ_URL), timeout=60, what="message in the DLQ")
        wait_for(lambda: depths.samples[-1].dead == 1, timeout=10, what="the DLQ's count")

    assert [m.task_name for m in dead] == [settings.EMAIL_TASK_NAME]
    assert [_order_of(m) for m in dead] == [order.pk]
    assert worker.process.poll() is None, "the worker's main process died"
    log = worker.text()
    assert "Unrecoverable error" not in log
    for attempt in range(1, MAX_RECEIVE_COUNT + 1):
        assert f"attempt={attempt} task={settings.EMAIL_TASK_NAME} outcome=requeued" in log
    assert f"attempt={MAX_RECEIVE_COUNT + 1}" not in log
    # One message all along, never a copy: the same SQS MessageId on every lost attempt and
    # in the DLQ (a re-send would have a new id), never two at once.
    [message_id] = set(re.findall(r"returned message id=(\S+) attempt=", log))
    assert [m["MessageId"] for m in _peek(DLQ_URL)] == [message_id]
    totals = _always_exactly_one(depths)
    assert totals[-1] == 1 and depths.samples[-1].dead == 1  # still there, in the DLQ
    assert [send.outcome for send in proxy.sends()] == ["dropped"] * MAX_RECEIVE_COUNT
    assert sent_emails(recipient) == []

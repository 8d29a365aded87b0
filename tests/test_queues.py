"""The ``queues`` fixture's promise: nothing of an earlier test reaches this test's queues.

End-to-end tests stop their workers without waiting for the workers' last long polls to end
(tests/notifications/conftest.py), and leave messages in flight: both are safe only because
each test's queue pair is new. This checks that premise against the emulator itself.
"""

from __future__ import annotations

import contextlib
import threading
import time

import boto3
import pytest
from botocore.exceptions import ClientError
from django.conf import settings

from tests.pipeline import queue_counts, queue_pair_reset, sqs


def _receive(url: str, wait: int = 0) -> list[dict]:
    response = sqs().receive_message(
        QueueUrl=url, WaitTimeSeconds=wait, AttributeNames=["ApproximateReceiveCount"]
    )
    return response.get("Messages", [])


def test_a_long_poll_left_open_on_the_old_queue_takes_nothing_from_the_new_one(queues):
    stale: list[dict] = []
    sent = threading.Event()
    client = boto3.session.Session().client("sqs", endpoint_url=settings.AWS_ENDPOINT_URL)
    client.meta.events.register("before-send.sqs.ReceiveMessage", lambda **_: sent.set())

    def stale_poll() -> None:
        # The emulator may also answer it with an error (its queue was deleted under it).
        with contextlib.suppress(ClientError):
            response = client.receive_message(QueueUrl=queues.url, WaitTimeSeconds=3)
            stale.extend(response.get("Messages", []))

    poll = threading.Thread(target=stale_poll)
    poll.start()  # as a stopped worker's last ReceiveMessage, still open on the server
    assert sent.wait(10)
    time.sleep(1)  # not a wait for an outcome: the request, sent, reaches the server (loopback)
    new = queue_pair_reset()
    sqs().send_message(QueueUrl=new.url, MessageBody="for this test")

    [message] = _receive(new.url, wait=5)
    poll.join(10)
    assert not poll.is_alive()
    assert stale == []
    assert message["Body"] == "for this test"
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"


@pytest.mark.visibility_timeout(30)
def test_messages_in_flight_do_not_survive_and_the_marker_sets_the_timeout(queues):
    assert queues.visibility_timeout == 30
    attributes = sqs().get_queue_attributes(
        QueueUrl=queues.url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
    )["Attributes"]
    assert attributes["VisibilityTimeout"] == "30"
    assert queues.dlq_url.rsplit("/", 1)[1] in attributes["RedrivePolicy"]
    sqs().send_message(QueueUrl=queues.url, MessageBody="held")
    assert _receive(queues.url)  # in flight for 30 s
    assert queue_counts(queues.url) == (0, 1)

    new = queue_pair_reset()
    assert queue_counts(new.url) == (0, 0)
    assert queue_counts(new.dlq_url) == (0, 0)
    assert new.visibility_timeout == 2

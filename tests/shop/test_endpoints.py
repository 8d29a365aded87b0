"""One endpoint per service: boto3's ``AWS_ENDPOINT_URL_<SERVICE>`` over ``AWS_ENDPOINT_URL``.

A process of its own (settings are read once) is started with one service pointed at a closed
port while the rest go to the emulator, and the reverse; it calls each service the way the
shop does (the boto3 clients of ``shop.aws``, Celery's publish through kombu's SQS transport,
the JWKS URL) and reports which answered. The published message is looked for on the queue.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from django.conf import settings

from shop.aws.sqs.envelope import EnvelopeError, envelope_decode
from tests.pipeline import ROOT, free_port, sqs

pytestmark = pytest.mark.subprocess

PROBE = r"""
import json, sys, urllib.request
import django
django.setup()
from celery import current_app
from django.conf import settings
from shop import aws

marker = sys.argv[1]
results = {}

def probe(name, call):
    try:
        call()
        results[name] = "ok"
    except Exception as exc:
        results[name] = type(exc).__name__

probe("sqs", lambda: aws.client("sqs", bounded=True).get_queue_attributes(
    QueueUrl=settings.ORDER_QUEUE_URL, AttributeNames=["QueueArn"]))
probe("kombu", lambda: current_app.send_task(
    "probe.task", kwargs={"marker": marker}, queue=settings.ORDER_QUEUE_NAME, declare=[]))
probe("sns", lambda: aws.client("sns", bounded=True).list_topics())
probe("ses", lambda: aws.client("ses", bounded=True).get_send_quota())
probe("cognito-idp", lambda: aws.client("cognito-idp", bounded=True).describe_user_pool(
    UserPoolId=settings.COGNITO_USER_POOL_ID))
probe("jwks", lambda: urllib.request.urlopen(settings.COGNITO_JWKS_URL, timeout=2).close())
results["django-ses"] = settings.AWS_SES_REGION_ENDPOINT_URL
print(json.dumps(results))
"""

#: The variable of each service, and what the probe calls through it.
SERVICES = {
    "SQS": ("sqs", "kombu"),
    "SNS": ("sns",),
    "SES": ("ses",),
    "COGNITO_IDENTITY_PROVIDER": ("cognito-idp", "jwks"),
}
PROBES = ("sqs", "kombu", "sns", "ses", "cognito-idp", "jwks")


def _probe(env: dict[str, str]) -> tuple[dict[str, str], bool]:
    """(probe -> "ok" or the error's class, whether the probe's message reached the queue)."""
    marker = uuid.uuid4().hex
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, marker],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "shop.settings.test", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    messages = (
        sqs()
        .receive_message(
            QueueUrl=settings.ORDER_QUEUE_URL, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        .get("Messages", [])
    )
    return results, any(_has(message, marker) for message in messages)


def _has(message: dict, marker: str) -> bool:
    try:
        return envelope_decode(message["Body"]).kwargs.get("marker") == marker
    except EnvelopeError:
        return False


@pytest.mark.parametrize("service", SERVICES)
def test_one_service_down_through_its_own_variable_the_others_answer(queues, service):
    dead = f"http://127.0.0.1:{free_port()}"
    results, published = _probe(
        {"AWS_ENDPOINT_URL": settings.AWS_ENDPOINT_URL, f"AWS_ENDPOINT_URL_{service}": dead}
    )
    down = SERVICES[service]
    assert {name for name in PROBES if results[name] != "ok"} == set(down), results
    assert published == (service != "SQS")
    assert results["django-ses"] == (dead if service == "SES" else settings.AWS_ENDPOINT_URL)


@pytest.mark.parametrize("service", SERVICES)
def test_only_the_service_with_its_own_variable_answers(queues, service):
    dead = f"http://127.0.0.1:{free_port()}"
    results, published = _probe(
        {"AWS_ENDPOINT_URL": dead, f"AWS_ENDPOINT_URL_{service}": settings.AWS_ENDPOINT_URL}
    )
    up = SERVICES[service]
    assert {name for name in PROBES if results[name] == "ok"} == set(up), results
    assert published == (service == "SQS")

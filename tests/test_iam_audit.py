"""Every AWS call each service makes is one its IAM policy grants, and every action a policy
grants is one its service really calls: no AccessDenied on AWS, nothing granted for nothing.

Each service's processes run with ``AWS_ENDPOINT_URL`` pointed at a counting proxy in front
of the session's emulator (``tests/aws_proxy.py``: it sees boto3's calls and kombu's own
pycurl polls alike) while they do everything their service does:

- public API: a real gunicorn (``SHOP_SERVICE=api``) places an order and is scraped: no AWS
  call at all (the confirmation task and the OrderPlaced event go to the outbox);
- outbox relay: a real ``manage.py outbox_relay`` publishes them (and the resend's, and the
  refused order's task) while the admin and the worker do their part;
- admin: the operators' commands, which run the same services as the admin's pages (queue
  health, DLQ list, redrive selected and all, delete, resend, ses_verify), and a real
  gunicorn (``SHOP_SERVICE=admin``) scraped for its queue gauges;
- worker: a real ``celery -A shop worker`` sends one confirmation and fails another (the SES
  sandbox refuses the recipient), with the sandbox rule asked of SES and django-ses's pacing
  on.

The actions each process called are compared, both ways, with the actions of its policies in
``infra/shop.yaml`` (resources are checked by ``tests/test_deploy_artifacts.py``).
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import urllib.request

import pytest
from django.conf import settings

from notifications.models import EmailStatus, OrderEmail
from orders.models import Order
from shop import aws
from shop.aws import provisioning
from shop.models import OutboxMessage
from tests.aws_proxy import AwsProxy
from tests.factories import ProductFactory
from tests.helpers import emulator_token, order_body
from tests.outbox import Relay
from tests.pipeline import ROOT, WebServer, Worker, database_url, dead_letter, wait_for

pytestmark = [pytest.mark.subprocess, pytest.mark.worker]
TEMPLATE = ROOT / "infra" / "shop.yaml"
#: Batch calls are authorized as their single-message action.
BATCH = {
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
    "DeleteMessageBatch": "DeleteMessage",
    "SendMessageBatch": "SendMessage",
    "PublishBatch": "Publish",  # SNS authorizes PublishBatch as sns:Publish
}


def policy_actions(*names: str) -> set[str]:
    """The actions the template's managed policies of these names grant."""
    from cfnlint.decode import cfn_yaml  # here: its import costs every test process ~1 s

    resources = cfn_yaml.load(str(TEMPLATE))["Resources"]
    actions: set[str] = set()
    for name in names:
        for statement in resources[name]["Properties"]["PolicyDocument"]["Statement"]:
            found = statement["Action"]
            actions.update([found] if isinstance(found, str) else found)
    return actions


def iam_actions(calls) -> set[str]:
    """IAM actions of the calls a counting proxy saw (unsigned requests are not AWS calls)."""
    actions = set()
    for service, action in calls:
        if service == "unsigned":
            continue
        if action.startswith("GET /v2/email/account"):  # SES v2's REST GetAccount
            action = "GetAccount"
        actions.add(f"{service}:{BATCH.get(action, action)}")
    return actions


#: The operators' commands, run one after another in ONE process of the admin service, each
#: exactly as ``manage.py <command>`` runs it (system checks included); a Django start per
#: command cost the test a few seconds of CPU each and added no AWS call (only actions count).
_COMMANDS = """
import contextlib, io, json, os, sys
sys.path.insert(0, os.getcwd())
import manage
answers = sys.stdout
for line in sys.stdin:
    sys.argv = ["manage.py", *json.loads(line)]
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            manage.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    answers.write(json.dumps([code, out.getvalue() + err.getvalue()]) + "\\n")
    answers.flush()
"""


class Commands:
    """``manage.py`` commands of one service, run in one process with its environment."""

    def __init__(self, counter: AwsProxy, log, **env: str):
        self.process = subprocess.Popen(
            [sys.executable, "-c", _COMMANDS],
            cwd=ROOT,
            env={
                **os.environ,
                "DATABASE_URL": database_url(),
                "AWS_ENDPOINT_URL": counter.url,
                **env,
            },
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("ab"),  # logging's handlers keep the real stderr
            text=True,
        )

    def __call__(self, *args: str) -> str:
        self.process.stdin.write(json.dumps(args) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], 120)
        assert ready, f"{args} gave no answer in 120 s"
        answer = self.process.stdout.readline()
        assert answer, f"the commands' process exited ({self.process.wait(10)}) at {args}"
        code, output = json.loads(answer)
        assert code == 0, (args, output)
        return output

    def close(self) -> None:
        self.process.stdin.close()
        assert self.process.wait(120) == 0


def _scrape(server: WebServer) -> str:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=20) as response:
        return response.read().decode()


@pytest.fixture
def topic() -> str:
    return aws.client("sns").create_topic(Name="audit-order-events")["TopicArn"]


def test_each_service_calls_exactly_what_its_policy_grants(
    transactional_db, tmp_path, queues, topic
):
    ProductFactory(sku="AUDIT-1", stock=100)
    calls: dict[str, set[str]] = {}

    # --- the public API ---------------------------------------------------------------------
    with AwsProxy(settings.AWS_ENDPOINT_URL) as counter:
        api = WebServer(
            tmp_path / "api.log",
            {
                "SHOP_SERVICE": "api",
                "AWS_ENDPOINT_URL": counter.url,
                # The key set is public HTTPS, no AWS call: straight to the emulator.
                "COGNITO_JWKS_URL": settings.COGNITO_JWKS_URL,
                "ORDER_EVENTS_TOPIC_ARN": topic,
                "METRICS_ALLOWED_IPS": "127.0.0.1",
            },
        ).start()
        try:
            status, body = api.request(
                "POST", "/api/orders/", order_body(("AUDIT-1", 1)), emulator_token()
            )
            assert status == 201, body
            assert "shop_sqs_messages" not in _scrape(api)
        finally:
            api.stop()
        calls["api"] = iam_actions(counter.calls())
    sent_order = Order.objects.get(pk=body["id"])

    # --- the outbox relay, until the end ----------------------------------------------------
    relay_counter = AwsProxy(settings.AWS_ENDPOINT_URL).__enter__()
    relay = Relay(tmp_path / "relay.log", {"AWS_ENDPOINT_URL": relay_counter.url}).start()
    wait_for(lambda: not OutboxMessage.objects.exists(), timeout=30, what="outbox published")

    # --- the admin (no worker runs: the DLQ keeps what is put there) ------------------------
    with AwsProxy(settings.AWS_ENDPOINT_URL) as counter:
        admin = WebServer(
            tmp_path / "admin.log",
            {
                "SHOP_SERVICE": "admin",
                "AWS_ENDPOINT_URL": counter.url,
                "METRICS_ALLOWED_IPS": "127.0.0.1",
            },
        ).start()
        try:
            assert 'shop_sqs_messages{queue="' in _scrape(admin)
        finally:
            admin.stop()
        manage = Commands(counter, tmp_path / "commands.log", SHOP_SERVICE="admin")
        try:
            manage("queue_stats")
            doomed = dead_letter(sent_order.pk)
            redriven = dead_letter(sent_order.pk)
            assert str(sent_order.pk) in manage("dlq_list")
            manage("dlq_delete", "--message-id", doomed, "--yes")
            manage("dlq_redrive", "--message-id", redriven)
            dead_letter(sent_order.pk)
            manage("dlq_redrive")  # "Redrive all": StartMessageMoveTask first
            manage("resend_confirmation", str(sent_order.pk))
            manage("ses_verify", "audit@example.com")
        finally:
            manage.close()
        calls["admin"] = iam_actions(counter.calls())

    # --- the worker ---------------------------------------------------------------------------
    refused = None
    with AwsProxy(settings.AWS_ENDPOINT_URL) as counter:
        worker = Worker(
            tmp_path / "worker.log",
            {
                "AWS_ENDPOINT_URL": counter.url,
                "SES_SANDBOX": "auto",  # asks SES (GetAccount), and the emulator says sandbox
                "SES_MAX_SEND_RATE": "",  # the fleet's rate: the account's, from GetSendQuota
            },
        ).start()
        try:
            wait_for(
                lambda: OrderEmail.objects.filter(
                    order=sent_order, status=EmailStatus.SENT
                ).exists(),
                timeout=60,
                what="the confirmation sent",
            )
            refused = _order_for(provisioning.UNVERIFIED_CUSTOMER)
            wait_for(
                lambda: re.search(rf"order={refused.pk} attempt=2 outcome=failed", worker.text()),
                timeout=60,
                what="two failed attempts (SQS's redelivery after the backoff)",
            )
        finally:
            worker.stop()
        calls["worker"] = iam_actions(counter.calls())
    wait_for(lambda: not OutboxMessage.objects.exists(), timeout=30, what="outbox published")
    relay.stop()
    relay_counter.__exit__(None, None, None)
    calls["relay"] = iam_actions(relay_counter.calls())

    granted = {
        "api": set(),  # no policy: the public API makes no AWS call
        "relay": policy_actions("RelayPolicy", "OrderEventsPublisherPolicy"),
        "admin": policy_actions("AdminPolicy"),
        "worker": policy_actions("WorkerPolicy"),
    }
    for service in granted:
        assert calls[service] <= granted[service], (service, calls[service] - granted[service])
        assert granted[service] <= calls[service], (service, granted[service] - calls[service])
    print(json.dumps({k: sorted(v) for k, v in calls.items()}, indent=1))


def _order_for(email: str) -> Order:
    from orders import services

    return services.order_place(
        customer_id=email,
        customer_email=email,
        shipping_address=services.ShippingAddress(
            name="Audit", line1="1 Main St", city="Town", postal_code="1", country="US"
        ),
        lines=[services.LineRequest(sku="AUDIT-1", quantity=1)],
    )

"""Creates the AWS resources the shop expects, idempotently: for the local emulator and tests.

The application never creates queues at run time; this is the set-up step that does, like
the CloudFormation template does on AWS (docs/deployment.md "Deploying to AWS"). Plain boto3 with no
Django, so the test suite can provision its emulator before Django's settings are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import boto3

DEMO_PASSWORD = "Demo-Passw0rd!"
VERIFIED_CUSTOMER = "alice@example.com"
UNVERIFIED_CUSTOMER = "bob@example.com"


@dataclass
class Plan:
    """What to create. Names are AWS resource names."""

    region: str = "us-east-1"
    endpoint_url: str | None = None
    #: Service name ("sqs", "ses"...) -> endpoint, over ``endpoint_url`` (boto3's
    #: ``AWS_ENDPOINT_URL_<SERVICE>`` convention).
    endpoint_urls: dict[str, str] = field(default_factory=dict)
    queue_name: str = "shop-orders"
    #: FIFO queues (the order queue and its DLQ, both named ``*.fifo``); also implied by a
    #: ``queue_name`` ending in ``.fifo``.
    fifo: bool = False
    max_receive_count: int = 3
    visibility_timeout: int = 30
    user_pool_name: str = "shop-customers"
    app_client_name: str = "shop-web"
    sender: str = "shop@example.com"
    customers: dict[str, bool] = field(
        default_factory=lambda: {VERIFIED_CUSTOMER: True, UNVERIFIED_CUSTOMER: False}
    )
    password: str = DEMO_PASSWORD
    # Optional: the SNS topic of order events and a demo queue subscribed to `OrderPlaced`.
    order_events: bool = False
    order_events_name: str = "shop-order-events"


@dataclass
class Result:
    queue_url: str
    dlq_url: str
    user_pool_id: str
    app_client_id: str
    created: list[str]
    order_events_topic_arn: str = ""
    order_events_queue_url: str = ""

    def environment(self) -> dict[str, str]:
        environment = {
            "ORDER_QUEUE_URL": self.queue_url,
            "COGNITO_USER_POOL_ID": self.user_pool_id,
            "COGNITO_APP_CLIENT_ID": self.app_client_id,
        }
        if self.order_events_topic_arn:
            environment["ORDER_EVENTS_TOPIC_ARN"] = self.order_events_topic_arn
        return environment


#: The events the demo queue of the order-events topic receives (its filter policy).
DEMO_EVENT_TYPES = ("OrderPlaced", "OrderShipped", "OrderCancelled")


def provision(plan: Plan) -> Result:
    session = boto3.session.Session()

    def client(name: str) -> Any:
        endpoint = plan.endpoint_urls.get(name) or plan.endpoint_url
        return session.client(name, region_name=plan.region, endpoint_url=endpoint or None)

    created: list[str] = []
    queue_url, dlq_url = queues_provision(client("sqs"), plan, created)
    pool_id, client_id = _cognito(client("cognito-idp"), plan, created)
    _ses(client("ses"), plan, created)
    result = Result(queue_url, dlq_url, pool_id, client_id, created)
    if plan.order_events:
        result.order_events_topic_arn, result.order_events_queue_url = _order_events(
            client("sns"), client("sqs"), plan, created
        )
    return result


def queues_provision(sqs: Any, plan: Plan, created: list[str]) -> tuple[str, str]:
    """The order queue and its dead-letter queue alone: (queue URL, DLQ URL).

    ``sqs`` is a boto3 SQS client: the tests pass their own to recreate the pair per test.
    """
    base = plan.queue_name.removesuffix(".fifo")
    fifo = plan.fifo or plan.queue_name.endswith(".fifo")
    queue_name = f"{base}.fifo" if fifo else base
    dlq_name = f"{base}-dlq.fifo" if fifo else f"{base}-dlq"
    # A FIFO queue's dead-letter queue must be FIFO too. No content-based deduplication: every
    # sender names its MessageDeduplicationId (kombu: a UUID; the relay: the outbox row).
    fifo_attributes = {"FifoQueue": "true"} if fifo else {}
    dlq_url = sqs.create_queue(
        QueueName=dlq_name,
        Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600), **fifo_attributes},
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    attributes = {
        "VisibilityTimeout": str(plan.visibility_timeout),
        "ReceiveMessageWaitTimeSeconds": "20",
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(plan.max_receive_count)}
        ),
    }
    existing = sqs.list_queues(QueueNamePrefix=queue_name).get("QueueUrls", [])
    queue_url = next((url for url in existing if url.rsplit("/", 1)[-1] == queue_name), "")
    if queue_url:
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes=attributes)
    else:
        queue_url = sqs.create_queue(
            QueueName=queue_name, Attributes={**attributes, **fifo_attributes}
        )["QueueUrl"]
        created.append(f"queue {queue_name} (DLQ {dlq_name})")
    return queue_url, dlq_url


def _cognito(idp: Any, plan: Plan, created: list[str]) -> tuple[str, str]:
    pools = idp.list_user_pools(MaxResults=60)["UserPools"]
    pool_id = next((p["Id"] for p in pools if p["Name"] == plan.user_pool_name), "")
    if not pool_id:
        pool_id = idp.create_user_pool(
            PoolName=plan.user_pool_name,
            UsernameAttributes=["email"],
            AutoVerifiedAttributes=["email"],
        )["UserPool"]["Id"]
        created.append(f"user pool {plan.user_pool_name} ({pool_id})")
    clients = idp.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)["UserPoolClients"]
    client_id = next(
        (c["ClientId"] for c in clients if c["ClientName"] == plan.app_client_name), ""
    )
    if not client_id:
        client_id = idp.create_user_pool_client(
            UserPoolId=pool_id,
            ClientName=plan.app_client_name,
            ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
            GenerateSecret=False,
        )["UserPoolClient"]["ClientId"]
        created.append(f"app client {plan.app_client_name} ({client_id})")
    for email in plan.customers:
        try:
            idp.admin_get_user(UserPoolId=pool_id, Username=email)
        except idp.exceptions.UserNotFoundException:
            idp.admin_create_user(
                UserPoolId=pool_id,
                Username=email,
                UserAttributes=[
                    {"Name": "email", "Value": email},
                    {"Name": "email_verified", "Value": "true"},
                ],
                MessageAction="SUPPRESS",
            )
            created.append(f"customer {email}")
        idp.admin_set_user_password(
            UserPoolId=pool_id, Username=email, Password=plan.password, Permanent=True
        )
    return pool_id, client_id


def _ses(ses: Any, plan: Plan, created: list[str]) -> None:
    verified = set(ses.list_identities(IdentityType="EmailAddress")["Identities"])
    for address in [plan.sender, *[e for e, ok in plan.customers.items() if ok]]:
        if address not in verified:
            ses.verify_email_identity(EmailAddress=address)
            created.append(f"SES identity {address}")


def _order_events(sns: Any, sqs: Any, plan: Plan, created: list[str]) -> tuple[str, str]:
    """The order-events topic and a demo queue subscribed to its order events (placed,
    shipped, cancelled)."""
    name = plan.order_events_name
    topic_arn = sns.create_topic(Name=name)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    # On AWS the queue must let the topic send to it (the emulator does not check).
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    if not any(s["Protocol"] == "sqs" and s["Endpoint"] == queue_arn for s in subscriptions):
        sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={
                "RawMessageDelivery": "true",
                "FilterPolicy": json.dumps({"event_type": list(DEMO_EVENT_TYPES)}),
            },
        )
        created.append(
            f"topic {name} with queue {name} subscribed to {', '.join(DEMO_EVENT_TYPES)}"
        )
    return topic_arn, queue_url

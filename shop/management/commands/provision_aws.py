"""Create the shop's queues, Cognito pool and SES identities on the configured endpoint."""

from urllib.parse import urlparse

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from shop import aws
from shop.aws import provisioning


class Command(BaseCommand):
    help = (
        "Idempotently create the order queue and its DLQ (redrive policy), a Cognito user pool "
        "with an app client and demo customers, and the SES identities. Meant for the local "
        "emulator; on AWS use the CloudFormation template (docs/deployment.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--env-file", help="Write the resulting variables to this file.")
        parser.add_argument("--visibility-timeout", type=int, default=30)
        parser.add_argument("--max-receive-count", type=int, default=3)
        parser.add_argument(
            "--order-events",
            action="store_true",
            help="Also create the SNS topic shop-order-events and a demo queue of the same name "
            "subscribed to its order events; writes ORDER_EVENTS_TOPIC_ARN.",
        )
        parser.add_argument(
            "--fifo",
            action="store_true",
            help="FIFO queues: the order queue <name>.fifo and its DLQ <name>-dlq.fifo (implied "
            "when ORDER_QUEUE_URL ends in .fifo); writes their ORDER_QUEUE_URL.",
        )
        parser.add_argument(
            "--allow-aws",
            action="store_true",
            help="Allow running without AWS_ENDPOINT_URL, i.e. against a real AWS account.",
        )

    def handle(self, *args, **options):
        services = ["sqs", "cognito-idp", "ses"] + (["sns"] if options["order_events"] else [])
        on_aws = [service for service in services if not aws.endpoint_url(service)]
        if on_aws and not options["allow_aws"]:
            raise CommandError(
                f"No endpoint for {', '.join(on_aws)} (AWS_ENDPOINT_URL, or "
                "AWS_ENDPOINT_URL_<SERVICE>), so this would create resources in a real AWS "
                "account. Use the CloudFormation template, or pass --allow-aws."
            )
        queue_name = urlparse(settings.ORDER_QUEUE_URL).path.rstrip("/").rsplit("/", 1)[-1]
        plan = provisioning.Plan(
            region=settings.AWS_REGION,
            endpoint_url=settings.AWS_ENDPOINT_URL or None,
            endpoint_urls={service: aws.endpoint_url(service) for service in services},
            queue_name=queue_name or "shop-orders",
            fifo=options["fifo"],
            max_receive_count=options["max_receive_count"],
            visibility_timeout=options["visibility_timeout"],
            sender=settings.DEFAULT_FROM_EMAIL,
            order_events=options["order_events"],
        )
        result = provisioning.provision(plan)
        for line in result.created:
            self.stdout.write(f"created {line}")
        self.stdout.write(
            self.style.SUCCESS(
                f"provisioned: queue {result.queue_url} -> DLQ {result.dlq_url} "
                f"(maxReceiveCount {plan.max_receive_count}), user pool {result.user_pool_id}, "
                f"app client {result.app_client_id}, {len(result.created)} resources new"
            )
        )
        if result.order_events_topic_arn:
            self.stdout.write(
                f"order events: topic {result.order_events_topic_arn} -> demo queue "
                f"{result.order_events_queue_url}"
            )
        if options["env_file"]:
            with open(options["env_file"], "w") as fh:
                for name, value in result.environment().items():
                    fh.write(f"{name}={value}\n")
            self.stdout.write(f"wrote {options['env_file']}")

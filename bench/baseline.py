"""The baseline the worker is measured against: a minimal loop with plain boto3.

Receive up to 10 messages (long polling), read each order id from the Celery message the app
published (``shop.aws.sqs.message_decode``), load those orders with their lines in
one query each, render the same compiled templates (``notifications.rendering``), send each
email through SES (``SendRawEmail``, a MIME message with the same text and HTML parts),
then delete the batch with one ``DeleteMessageBatch``. The templates are compiled and the
database connected before the first receive, as the worker's are before it is ready. No
Celery, no locking, no status updates, no sandbox check, no retries: the floor of what
sending these emails costs against the same emulator and database. Run with ``Stack.env``:

``python bench/baseline.py --count 2000 --wait 1 --out baseline.json`` stops once it has
sent that many emails (or after ``--timeout`` seconds) and writes
``{"sent", "started", "first_sent", "last_sent", "receives", "empty_receives", "cpu_seconds"}``
(epoch seconds; ``started`` is when its first receive call went out; ``cpu_seconds`` the
process's own, start-up included).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def mime(*, sender: str, to: str, subject: str, text: str, html: str) -> bytes:
    message = EmailMessage(policy=SMTP)
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = to
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message.as_bytes()


def drain(*, count: int, wait: int, timeout: float) -> dict:
    import boto3
    from django.conf import settings

    from notifications import rendering
    from notifications.models import OrderEmail
    from orders.models import Order
    from shop.aws.sqs import message_decode

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    session = boto3.session.Session()
    sqs = session.client("sqs", region_name=settings.AWS_REGION, endpoint_url=endpoint)
    ses = session.client("ses", region_name=settings.AWS_REGION, endpoint_url=endpoint)
    queue_url = settings.ORDER_QUEUE_URL
    # Warm, as the worker is before it says "ready": its system check compiles the templates
    # in the main process, and its database connection is open.
    rendering.templates_check()
    Order.objects.exists()
    sent = receives = empty = 0
    first_sent = last_sent = 0.0
    started = time.time()
    deadline = time.monotonic() + timeout
    while sent < count and time.monotonic() < deadline:
        receives += 1
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait
        ).get("Messages", [])
        if not messages:
            empty += 1
            continue
        decoded = [message_decode(message["Body"]) for message in messages]
        # An email task names its email (the first version's, its order).
        email_orders = dict(
            OrderEmail.objects.filter(
                pk__in=[d.email_id for d in decoded if d.email_id is not None]
            ).values_list("pk", "order_id")
        )
        order_ids = [
            d.order_id if d.order_id is not None else email_orders.get(d.email_id) for d in decoded
        ]
        orders = Order.objects.prefetch_related("lines").in_bulk(
            [order_id for order_id in order_ids if order_id is not None]
        )
        for order_id in order_ids:
            order = orders.get(order_id)
            if order is None:
                continue
            email = rendering.confirmation_render(order=order)
            ses.send_raw_email(
                Source=settings.DEFAULT_FROM_EMAIL,
                Destinations=[order.customer_email],
                RawMessage={
                    "Data": mime(
                        sender=settings.DEFAULT_FROM_EMAIL,
                        to=order.customer_email,
                        subject=email.subject,
                        text=email.text,
                        html=email.html,
                    )
                },
            )
            sent += 1
            last_sent = time.time()
            first_sent = first_sent or last_sent
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]}
                for n, message in enumerate(messages)
            ],
        )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "sent": sent,
        "started": started,
        "first_sent": first_sent,
        "last_sent": last_sent,
        "receives": receives,
        "empty_receives": empty,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--wait", type=int, default=20, help="WaitTimeSeconds of each receive")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--out")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings.development")
    import django

    django.setup()
    result = drain(count=args.count, wait=args.wait, timeout=args.timeout)
    text = json.dumps(result)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

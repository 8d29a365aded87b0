"""Orders for the worker benchmarks, placed through the shop's own code (run with ``Stack.env``).

``python bench/worker_orders.py setup --customers 50``: bench products, and the customers'
addresses verified in SES through the app's own service (the sandbox check the worker makes
is part of the path being measured, so recipients must pass it).

``python bench/worker_orders.py place --count 2000 --out orders.json``: orders placed with
``orders.services.order_place`` (3 lines each, rotating customers), each committed with its
confirmation's outbox row exactly as an API request does (the benchmark's relay publishes
it). With ``--rate 5``, paced at that many orders a second; with ``--publish direct``, as
before the outbox (a SendMessage after the commit, then the 201). Writes
``{"orders": [[order_id, committed_at], ...]}``
(``committed_at``: epoch seconds once ``order_place`` returned, i.e. after the commit: when
the API would answer 201).

``python bench/worker_orders.py republish --ids-from orders.json``: the confirmations of
those orders published again straight to the queue (``shop.aws.sqs.confirmation_enqueue``),
for a second drain of the same orders.

``bulk --count 10000`` creates orders with their lines and ``pending`` email records in bulk
without publishing them (``--outbox``: with their outbox rows, for a relay to publish);
``feed --ids-from orders.json`` then publishes them with
``shop.aws.sqs.confirmation_enqueue``, keeping a bounded number queued.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKUS = [f"BENCH-W{n}" for n in range(5)]
CUSTOMER = "bench-customer-{:03d}@example.com"


def customers(count: int) -> list[str]:
    return [CUSTOMER.format(n) for n in range(count)]


def setup(args: argparse.Namespace) -> dict:
    from notifications.services import recipient_verification_request
    from orders.services import product_upsert

    for n, sku in enumerate(SKUS):
        product_upsert(sku=sku, name=f"Bench {n}", price=Decimal("9.99") + n, stock=10**9)
    for address in customers(args.customers):
        recipient_verification_request(address=address)
    return {"products": len(SKUS), "customers": args.customers}


def place(args: argparse.Namespace) -> dict:
    from django.db import connection

    from orders.services import LineRequest, ShippingAddress, order_place

    carts = itertools.cycle(
        [[LineRequest(sku=SKUS[(n + k) % 5], quantity=k + 1) for k in range(3)] for n in range(5)]
    )
    who = itertools.cycle(customers(args.customers)[args.first_customer :])
    address = ShippingAddress(
        name="Bench O'Customer", line1="1 Main St", city="Springfield", postal_code="12345",
        country="US",
    )  # fmt: skip
    placed: list[tuple[int, float]] = []
    started = time.time()
    for n in range(args.count):
        if args.rate:
            due = started + n / args.rate
            if (wait := due - time.time()) > 0:
                time.sleep(wait)  # the load generator's pacing, not part of any measured path
        email = next(who)
        order = order_place(
            customer_id=f"bench-{email.split('@')[0]}",
            customer_email=email,
            shipping_address=address,
            lines=next(carts),
        )
        if args.publish == "direct":
            direct_publish(order.pk, queue_url=args.direct_queue)
        placed.append((order.pk, time.time()))
    elapsed = time.time() - started
    connection.close()
    return {"orders": placed, "seconds": elapsed}


def direct_publish(order_id: int, *, queue_url: str = "") -> None:
    """The shop before the outbox (``place --publish direct``): the request published the
    confirmation task itself after the commit (one SendMessage) and answered 201 after that.
    Without ``queue_url``: with ``confirmation_enqueue``, and the order's outbox rows deleted
    so that no relay publishes it too (run none meanwhile). With ``--direct-queue URL``: one
    plain boto3 SendMessage of the same Celery message to that queue, the rows left for a
    relay to publish to ``ORDER_QUEUE_URL`` (a queue nobody reads), so a relay may run."""
    from django.conf import settings

    from shop import aws
    from shop.aws.sqs.envelope import envelope_encode
    from shop.models import OutboxMessage

    if queue_url:
        body = envelope_encode(
            task_name=settings.CONFIRMATION_TASK_NAME, kwargs={"order_id": order_id}
        )
        aws.client("sqs").send_message(QueueUrl=queue_url, MessageBody=body)
        return
    from shop.aws.sqs import confirmation_enqueue

    confirmation_enqueue(order_id=order_id)
    # The order's email task names its email (kind confirmation: the order's only one yet).
    OutboxMessage.objects.filter(payload__kwargs__email_id__in=_email_ids(order_id)).delete()


def _email_ids(order_id: int) -> list[int]:
    from notifications.models import OrderEmail

    return list(OrderEmail.objects.filter(order_id=order_id).values_list("pk", flat=True))


def bulk(args: argparse.Namespace) -> dict:
    """Orders, their lines and ``pending`` email records, created in bulk and NOT published
    (``feed`` publishes them): what ``order_place`` saves, minus the stock it takes."""
    from django.conf import settings
    from django.db import transaction

    from notifications.models import EmailStatus, OrderEmail
    from orders.models import Order, OrderLine, Product
    from shop.outbox import outbox_task_add

    products = {product.sku: product for product in Product.objects.filter(sku__in=SKUS)}
    who = itertools.cycle(customers(args.customers))
    started = time.time()
    ids: list[int] = []
    for first in range(0, args.count, 1000):
        carts = [
            [(products[SKUS[(n + k) % 5]], k + 1) for k in range(3)]
            for n in range(first, min(args.count, first + 1000))
        ]
        with transaction.atomic():
            orders = Order.objects.bulk_create(
                Order(
                    customer_id=f"bench-{(email := next(who)).split('@')[0]}",
                    customer_email=email,
                    shipping_name="Bench O'Customer",
                    shipping_line1="1 Main St",
                    shipping_city="Springfield",
                    shipping_postal_code="12345",
                    shipping_country="US",
                    currency=settings.SHOP_CURRENCY,
                    total=sum((product.price * quantity for product, quantity in cart), Decimal(0)),
                )
                for cart in carts
            )
            OrderLine.objects.bulk_create(
                OrderLine(
                    order=order,
                    product=product,
                    sku=product.sku,
                    name=product.name,
                    unit_price=product.price,
                    quantity=quantity,
                    line_total=product.price * quantity,
                )
                for order, cart in zip(orders, carts, strict=True)
                for product, quantity in cart
            )
            emails = OrderEmail.objects.bulk_create(
                OrderEmail(order=order, status=EmailStatus.PENDING) for order in orders
            )
            if args.outbox:  # each email's task in the outbox, as order_place writes it
                for email in emails:
                    outbox_task_add(
                        queue_url=settings.ORDER_QUEUE_URL,
                        task_name=settings.EMAIL_TASK_NAME,
                        kwargs={"email_id": email.pk},
                        group_id=str(email.order_id),
                    )
        ids += [order.pk for order in orders]
    return {
        "orders": [[order_id, 0] for order_id in ids],
        "seconds": time.time() - started,
        "committed_at": time.time(),  # the last transaction's commit (the only one up to 1000)
    }


def feed(args: argparse.Namespace) -> dict:
    """Publish the confirmations of these orders with ``confirmation_enqueue`` (the app's own
    publish), keeping between ``--low`` and ``--high`` messages queued: the emulator's
    ReceiveMessage costs time in proportion to the queue's depth, which SQS's does not."""
    from django.conf import settings

    from shop import aws
    from shop.aws.sqs import confirmation_enqueue

    ids = [order_id for order_id, _ in json.loads(Path(args.ids_from).read_text())["orders"]]
    sqs = aws.client("sqs")

    def depth() -> int:
        attributes = sqs.get_queue_attributes(
            QueueUrl=settings.ORDER_QUEUE_URL, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    started = time.time()
    waits = 0
    for n, order_id in enumerate(ids):
        if n and n % 50 == 0 and depth() >= args.high:
            while depth() > args.low:
                waits += 1
                time.sleep(0.1)  # the feeder's pacing, not on any measured path
        confirmation_enqueue(order_id=order_id)
    return {"published": len(ids), "seconds": time.time() - started, "waits": waits}


def republish(args: argparse.Namespace) -> dict:
    """Publish these orders' confirmation tasks again, straight to the queue (the app's
    ``confirmation_enqueue``, no outbox): the burst is queued before the worker starts."""
    from shop.aws.sqs import confirmation_enqueue

    ids = [order_id for order_id, _ in json.loads(Path(args.ids_from).read_text())["orders"]]
    started = time.time()
    for order_id in ids:
        confirmation_enqueue(order_id=order_id)
    return {"published": len(ids), "failed": [], "seconds": time.time() - started}


def main() -> int:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("setup")
    p.add_argument("--customers", type=int, default=50)
    p = commands.add_parser("place")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--rate", type=float, default=0)
    p.add_argument("--customers", type=int, default=50)
    p.add_argument("--first-customer", type=int, default=0)
    p.add_argument(
        "--publish",
        choices=["outbox", "direct"],
        default="outbox",
        help="outbox: the shop's (a relay publishes); direct: as before the outbox",
    )
    p.add_argument("--direct-queue", default="", help="with --publish direct: send there")
    p = commands.add_parser("republish")
    p.add_argument("--ids-from", required=True)
    p = commands.add_parser("bulk")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--customers", type=int, default=50)
    p.add_argument("--outbox", action="store_true", help="with each confirmation's outbox row")
    p = commands.add_parser("feed")
    p.add_argument("--ids-from", required=True)
    p.add_argument("--high", type=int, default=400)
    p.add_argument("--low", type=int, default=200)
    for p in commands.choices.values():
        p.add_argument("--out", help="write the JSON result here (default: stdout)")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings.development")
    import django

    django.setup()
    commands = {"setup": setup, "place": place, "republish": republish, "bulk": bulk, "feed": feed}
    result = commands[args.command](args)
    text = json.dumps(result)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Queue the confirmation email of the given orders again (sent ones too, on purpose)."""

from django.core.management.base import BaseCommand

from notifications import services


class Command(BaseCommand):
    help = (
        "Put the confirmation email of each ORDER_ID back on the queue, also when it was "
        "already sent; each resend is recorded in the email's history and its task written "
        "to the outbox (the relay publishes it). Exit status 1 if any order is unknown."
    )

    def add_arguments(self, parser):
        parser.add_argument("order_ids", nargs="+", type=int, metavar="ORDER_ID")
        parser.add_argument(
            "--actor", default="manage.py", help="Recorded as who asked (default manage.py)."
        )

    def handle(self, *args, order_ids: list[int], actor: str, **options):
        result = services.confirmation_resend(order_ids=order_ids, actor=actor)
        for order_id in dict.fromkeys(order_ids):
            if order_id in result.missing:
                state = "no such order (or no confirmation record)"
            else:
                state = "queued (in the outbox)"
            self.stdout.write(f"order {order_id}: {state}")
        line = (
            f"resend: {result.requested} requested, {len(result.queued)} queued, "
            f"{len(result.missing)} unknown"
        )
        self.stdout.write(self.style.ERROR(line) if result.missing else self.style.SUCCESS(line))
        if result.missing:
            raise SystemExit(1)

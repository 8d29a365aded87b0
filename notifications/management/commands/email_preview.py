"""Write an order's confirmation email to files, without sending it."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from notifications import services
from orders.models import Order


class Command(BaseCommand):
    help = "Render ORDER_ID's confirmation email to OUTPUT.html and OUTPUT.txt (nothing is sent)."

    def add_arguments(self, parser):
        parser.add_argument("order_id", type=int)
        parser.add_argument("--output", default="var/email-preview", help="path without suffix")

    def handle(self, *args, order_id: int, output: str, **options):
        try:
            email = services.confirmation_preview(order_id=order_id)
        except Order.DoesNotExist:
            raise CommandError(f"no order {order_id}") from None
        base = Path(output)
        base.parent.mkdir(parents=True, exist_ok=True)
        base.with_suffix(".html").write_text(email.html, encoding="utf-8")
        base.with_suffix(".txt").write_text(email.text, encoding="utf-8")
        self.stdout.write(f"subject: {email.subject}")
        self.stdout.write(f"wrote {base.with_suffix('.html')} and {base.with_suffix('.txt')}")

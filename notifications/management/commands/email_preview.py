"""Write one of an order's emails to files, without sending it."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from notifications import selectors, services
from orders.models import Order


class Command(BaseCommand):
    help = (
        "Render ORDER_ID's email of --kind (confirmation, shipped, cancelled) to OUTPUT.html "
        "and OUTPUT.txt (nothing is sent)."
    )

    def add_arguments(self, parser):
        parser.add_argument("order_id", type=int)
        parser.add_argument("--output", default="var/email-preview", help="path without suffix")
        parser.add_argument("--kind", default="confirmation", choices=sorted(selectors.EMAIL_KINDS))

    def handle(self, *args, order_id: int, output: str, kind: str, **options):
        try:
            email = services.order_email_preview(order_id=order_id, kind=kind)
        except Order.DoesNotExist:
            raise CommandError(f"no order {order_id}") from None
        base = Path(output)
        base.parent.mkdir(parents=True, exist_ok=True)
        base.with_suffix(".html").write_text(email.html, encoding="utf-8")
        base.with_suffix(".txt").write_text(email.text, encoding="utf-8")
        self.stdout.write(f"subject: {email.subject}")
        self.stdout.write(f"wrote {base.with_suffix('.html')} and {base.with_suffix('.txt')}")

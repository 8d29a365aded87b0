"""List the messages in the dead-letter queue (they stay there)."""

from django.core.management.base import BaseCommand, CommandError

from notifications import dead_letters
from shop.aws import sqs


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


class Command(BaseCommand):
    help = (
        "List the dead-letter queue's messages, oldest first: SQS message id, order, customer, "
        "receive count, first receive, last error. Messages stay in the queue (each look adds "
        "one to their receive count)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=100, help="at most this many (100)")

    def handle(self, *args, limit: int, **options):
        if limit < 1:
            raise CommandError("--limit must be at least 1")
        try:
            rows = dead_letters.dlq_list(limit=limit)
        except sqs.QueueUnavailable as exc:
            raise CommandError(f"SQS cannot be reached: {exc}") from exc
        for row in rows:
            order = f"order {row.order_id}" if row.order_id is not None else "no order"
            self.stdout.write(
                f"{row.message_id}  {order}  {row.customer_email or '-'}  "
                f"receives={row.receive_count}  first_seen={_when(row.first_seen)}  "
                f"sent={_when(row.sent_at)}"
                + (f"  email={row.email_kind}" if row.email_kind else "")
            )
            if row.problem:
                self.stdout.write(f"    problem: {row.problem}")
            if row.last_error:
                self.stdout.write(f"    last error: {row.last_error[:200]}")
        self.stdout.write(
            f"{len(rows)} message(s) in the dead-letter queue (at most {limit} shown)"
        )

"""Re-publish confirmation emails still pending (run it on a schedule, e.g. every 5 minutes)."""

from datetime import timedelta

from django.core.management.base import BaseCommand

from notifications import services


class Command(BaseCommand):
    help = (
        "Put back on the queue the confirmation emails still pending after --older-than "
        "seconds (their publish failed or their message was lost). Safe to run any time: "
        "a duplicate message never sends a second email."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, default=600, metavar="SECONDS")
        parser.add_argument("--limit", type=int, default=1000)

    def handle(self, *args, older_than: int, limit: int, **options):
        def progress(order_id: int, ok: bool) -> None:
            self.stdout.write(f"order {order_id}: {'queued' if ok else 'FAILED to queue'}")

        result = services.confirmation_sweep(
            older_than=timedelta(seconds=older_than), limit=limit, progress=progress
        )
        line = (
            f"sweep: {result.found} pending older than {older_than}s, "
            f"{result.published} queued, {result.failed} failed"
        )
        self.stdout.write(self.style.SUCCESS(line) if not result.failed else self.style.ERROR(line))
        if result.failed:
            raise SystemExit(1)

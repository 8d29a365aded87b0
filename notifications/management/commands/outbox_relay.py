"""The outbox relay: publish committed outbox rows to SQS and SNS (its own process)."""

import logging
import signal
import threading

from django.core import checks
from django.core.management.base import BaseCommand

from notifications import services
from shop.outbox import relay
from shop.outbox.relay import RelayCounts

logger = logging.getLogger("shop.outbox.relay")


def counts_line(counts: RelayCounts) -> str:
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.by_kind.items())) or "none"
    return (
        f"outbox: {counts.published} published ({kinds}), {counts.failed} failed "
        f"(backing off), {counts.calls} call(s)"
    )


class Command(BaseCommand):
    help = (
        "Publish the outbox: the confirmation tasks (SQS, SendMessageBatch) and order events "
        "(SNS, PublishBatch) written with each committed change. Runs until SIGTERM or "
        "SIGINT, which finish the batch in hand; --once publishes what is due and exits "
        "(status 1 if any row failed). Several relays may run at once on PostgreSQL."
    )
    #: The models' checks only. The relay renders no email, so it skips the email template
    #: check (notifications/checks.py): importing pybars3 builds its grammar, about 1 s of
    #: CPU at every start. The worker and ``manage.py check`` still run it.
    requires_system_checks = [checks.Tags.models]

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="One pass, then exit.")

    def handle(self, *args, once: bool, **options):
        if once:
            counts = relay.outbox_relay_once(on_published=services.confirmation_queued_record)
            line = counts_line(counts)
            self.stdout.write(self.style.ERROR(line) if counts.failed else self.style.SUCCESS(line))
            if counts.failed:
                raise SystemExit(1)
            return
        stop = threading.Event()

        def on_signal(signum, frame):
            name = signal.Signals(signum).name
            logger.info("outbox relay: %s, finishing the batch in hand", name)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

        def progress(counts: RelayCounts) -> None:
            logger.info(counts_line(counts))

        total = relay.outbox_relay_run(
            stop=stop, on_published=services.confirmation_queued_record, progress=progress
        )
        logger.info("outbox relay stopped; in all %s", counts_line(total))

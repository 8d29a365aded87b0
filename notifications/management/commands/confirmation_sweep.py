"""Kept for scripts and schedules that still call it: ``outbox_relay --once``."""

from django.core.management.base import BaseCommand

from notifications import services
from notifications.management.commands.outbox_relay import counts_line
from shop.outbox import relay


class Command(BaseCommand):
    help = (
        "Deprecated alias of `outbox_relay --once`: publish what the outbox holds now and "
        "print the counts (exit status 1 if any row failed). The relay process makes a "
        "schedule unnecessary; --older-than and --limit are accepted and ignored."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, default=0, metavar="SECONDS")
        parser.add_argument("--limit", type=int, default=0)

    def handle(self, *args, **options):
        counts = relay.outbox_relay_once(on_published=services.confirmation_queued_record)
        line = counts_line(counts)
        self.stdout.write(self.style.ERROR(line) if counts.failed else self.style.SUCCESS(line))
        if counts.failed:
            raise SystemExit(1)

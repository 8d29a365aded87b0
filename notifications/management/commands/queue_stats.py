"""Print the order queue's and its dead-letter queue's counts and settings."""

from django.core.management.base import BaseCommand, CommandError

from notifications import dead_letters
from shop.aws import sqs


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "n/a"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


class Command(BaseCommand):
    help = (
        "Show the order queue and its dead-letter queue as SQS counts them: visible, in flight "
        "and delayed messages, visibility timeout, retention, redrive policy."
    )

    def handle(self, *args, **options):
        try:
            stats = dead_letters.queue_health()
        except sqs.QueueUnavailable as exc:
            raise CommandError(f"SQS cannot be reached: {exc}") from exc
        for queue_stats in stats:
            self.stdout.write(self.style.MIGRATE_HEADING(f"{queue_stats.role}: {queue_stats.name}"))
            rows = [
                ("url", queue_stats.url),
                ("visible", queue_stats.visible),
                ("in flight", queue_stats.in_flight),
                ("delayed", queue_stats.delayed),
                ("oldest message", "n/a (CloudWatch: ApproximateAgeOfOldestMessage)"),
                ("visibility timeout", _duration(queue_stats.visibility_timeout)),
                ("retention", _duration(queue_stats.retention_seconds)),
            ]
            if queue_stats.dlq_url:
                rows.append(
                    (
                        "redrive policy",
                        f"to {queue_stats.dlq_url} after {queue_stats.max_receive_count} receives",
                    )
                )
            for label, value in rows:
                self.stdout.write(f"  {label:<20} {value}")

"""Move messages from the dead-letter queue back to the order queue."""

from django.core.management.base import BaseCommand, CommandError

from notifications import dead_letters
from shop.aws import sqs


def report(command: BaseCommand, result: dead_letters.DeadLetterResult, verb: str) -> None:
    """Print the totals; exit with status 1 if anything failed (shared with dlq_delete)."""
    line = f"{verb} {result.done}, failed {result.failed}, not found {result.not_found}"
    if result.task_handle:
        line += f" (SQS message move task {result.task_handle})"
    command.stdout.write(command.style.SUCCESS(line) if result.ok else command.style.ERROR(line))
    if result.stopped:
        command.stderr.write(f"stopped early: {result.stopped}")
    if not result.ok:
        raise SystemExit(1)


def progress_printer(command: BaseCommand):
    def progress(message_id: str, order_id: int | None, outcome: str, detail: str) -> None:
        order = f"order {order_id}" if order_id is not None else "no order"
        text = f"{message_id} ({order}): {outcome}" + (f": {detail}" if detail else "")
        command.stdout.write(text if outcome != "failed" else command.style.ERROR(text))

    return progress


class Command(BaseCommand):
    help = (
        "Move messages from the dead-letter queue back to the order queue, where the worker "
        "tries them again (with a fresh receive count). Default: all of them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=None, help="at most this many")
        parser.add_argument(
            "--message-id",
            dest="message_ids",
            action="append",
            default=None,
            metavar="ID",
            help="only this SQS message id (repeatable)",
        )

    def handle(self, *args, limit: int | None, message_ids: list[str] | None, **options):
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")
        try:
            result = dead_letters.dlq_redrive(
                message_ids=message_ids,
                limit=limit,
                actor="manage.py dlq_redrive",
                progress=progress_printer(self),
            )
        except sqs.QueueUnavailable as exc:
            raise CommandError(f"SQS cannot be reached: {exc}") from exc
        report(self, result, "moved")

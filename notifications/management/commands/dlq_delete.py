"""Delete messages from the dead-letter queue for good."""

from django.core.management.base import BaseCommand, CommandError

from notifications import dead_letters
from notifications.management.commands.dlq_redrive import progress_printer, report
from shop.aws import sqs


class Command(BaseCommand):
    help = (
        "Delete the given messages (SQS message ids, see dlq_list) from the dead-letter queue. "
        "Asks first unless --yes. Their orders' email records stay as they are."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--message-id",
            dest="message_ids",
            action="append",
            required=True,
            metavar="ID",
            help="an SQS message id (repeatable)",
        )
        parser.add_argument(
            "--yes",
            "--noinput",
            "--no-input",
            dest="yes",
            action="store_true",
            help="do not ask for confirmation",
        )

    def handle(self, *args, message_ids: list[str], yes: bool, **options):
        ids = list(dict.fromkeys(message_ids))
        if not yes:
            question = f"Delete {len(ids)} message(s) from the dead-letter queue for good? [y/N] "
            try:
                answer = input(question)
            except EOFError:
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                raise CommandError("Cancelled: nothing was deleted.")
        try:
            result = dead_letters.dlq_delete(
                message_ids=ids, actor="manage.py dlq_delete", progress=progress_printer(self)
            )
        except sqs.QueueUnavailable as exc:
            raise CommandError(f"SQS cannot be reached: {exc}") from exc
        report(self, result, "deleted")

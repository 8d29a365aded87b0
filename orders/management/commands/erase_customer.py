"""Erase one customer's personal data (orders anonymised, everything else erased)."""

from django.core.management.base import BaseCommand, CommandError

from orders.privacy import customer_erase


class Command(BaseCommand):
    help = (
        "Erase or anonymise one customer's personal data, found by Cognito sub and/or email "
        "address (docs/personal-data.md). Orders keep their totals, lines and stock; who "
        "placed them and where they went is removed. Prints what changed. Asks first unless "
        "--yes; --dry-run only counts."
    )

    def add_arguments(self, parser):
        parser.add_argument("--sub", dest="customer_id", help="the customer's Cognito sub")
        parser.add_argument("--email", help="the customer's email address")
        parser.add_argument("--dry-run", action="store_true", help="count, change nothing")
        parser.add_argument(
            "--yes", "--noinput", "--no-input", dest="yes", action="store_true",
            help="do not ask for confirmation",
        )  # fmt: skip

    def handle(self, *args, customer_id, email, dry_run: bool, yes: bool, **options):
        if not customer_id and not email:
            raise CommandError("give --sub, --email or both")
        found = customer_erase(customer_id=customer_id, email=email, dry_run=True)
        subject = found.subject
        self.stdout.write(
            f"customer: {len(subject.customer_ids)} Cognito sub(s), "
            f"{len(subject.emails)} email address(es), {len(subject.order_ids)} order(s)"
        )
        if dry_run or not any(found.counts.values()):
            self._report(found.counts, "would change" if any(found.counts.values()) else "")
            if not any(found.counts.values()):
                self.stdout.write("nothing to erase")
            return
        if not yes:
            try:
                answer = input("Erase this customer's personal data for good? [y/N] ")
            except EOFError:
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                raise CommandError("Cancelled: nothing was changed.")
        result = customer_erase(customer_id=customer_id, email=email)
        self._report(result.counts, "")
        self.stdout.write(self.style.SUCCESS("erased"))

    def _report(self, counts: dict[str, int], prefix: str) -> None:
        for what, count in counts.items():
            self.stdout.write(f"{prefix + ': ' if prefix else ''}{what}: {count}")

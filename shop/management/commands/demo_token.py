"""Print a fresh Cognito ID token for a demo customer (USER_PASSWORD_AUTH)."""

from django.core.management.base import BaseCommand, CommandError

from shop.aws import cognito, provisioning


class Command(BaseCommand):
    help = "Print an ID token for EMAIL, for use as `Authorization: Bearer <token>`."

    def add_arguments(self, parser):
        parser.add_argument("email", nargs="?", default=provisioning.VERIFIED_CUSTOMER)
        parser.add_argument("--password", default=provisioning.DEMO_PASSWORD)

    def handle(self, *args, **options):
        try:
            token = cognito.id_token_obtain(email=options["email"], password=options["password"])
        except cognito.SignInFailed as exc:
            raise CommandError(f"could not sign in {options['email']}: {exc}") from exc
        self.stdout.write(token)

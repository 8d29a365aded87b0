"""Ask SES to verify a recipient address: the sandbox's way to let a customer receive mail."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from notifications import services
from notifications.ses import SesUnavailable


class Command(BaseCommand):
    help = (
        "Start SES's verification of ADDRESS (VerifyEmailIdentity). On AWS the address gets "
        "a link from SES and is verified once it is followed; the emulator verifies at once. "
        "Needed only while the SES account is in the sandbox."
    )

    def add_arguments(self, parser):
        parser.add_argument("address")

    def handle(self, *args, address: str, **options):
        try:
            validate_email(address)
        except ValidationError:
            raise CommandError(f"not an email address: {address!r}") from None
        try:
            services.recipient_verification_request(address=address)
        except SesUnavailable as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"verification of {address} requested from SES"))

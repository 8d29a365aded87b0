"""Create or reset the development admin login (DEBUG only)."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create (or reset) the staff login admin / admin for local development."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default="admin")

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("dev_admin only runs with DJANGO_DEBUG on; use createsuperuser.")
        user, created = get_user_model().objects.get_or_create(username=options["username"])
        user.is_staff = user.is_superuser = True
        user.set_password(options["password"])
        user.save()
        verb = "created" if created else "reset"
        self.stdout.write(f"{verb} admin login {options['username']} / {options['password']}")

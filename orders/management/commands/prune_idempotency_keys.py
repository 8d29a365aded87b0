"""Delete expired Idempotency-Keys (run daily; expired keys are also replaced on reuse)."""

from django.core.management.base import BaseCommand

from orders.services import idempotency_keys_prune


class Command(BaseCommand):
    help = "Delete idempotency keys past their expiry (IDEMPOTENCY_KEY_TTL_HOURS)."

    def handle(self, *args, **options):
        self.stdout.write(f"deleted {idempotency_keys_prune()} expired idempotency keys")

"""``Idempotency-Key`` for ``POST /api/orders/``: a retried request gets its first answer again.

What a replay answers belongs to the API, so this sits beside it, under ``orders.apis`` and
over the services: the API hands over how to answer (place the order, serialize it) and this
module stores that answer, in the same transaction, for the retries of the same request. The
services know nothing of it: ``services.order_place`` places an order, whoever asks.

The key is claimed by inserting its row first, in the order's transaction. A concurrent
request with the same key waits on the unique index (a row lock on PostgreSQL, the write lock
on SQLite) until the first commits, then replays its answer; if the first fails (bad input,
no stock), nothing was stored and the retry runs afresh. The answer stored is the first
one exactly: a replay does not show what happened to the order since.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from orders.models import IdempotencyKey
from shop.exceptions import UnprocessableError


class IdempotencyKeyReused(UnprocessableError):
    code = "idempotency_key_reused"


@dataclass(frozen=True)
class Answer:
    #: The response body: the first answer (``replayed``) or the one just made.
    body: dict
    #: True when the body is the stored one of an earlier request with the same key.
    replayed: bool


def order_answer_once(
    *,
    customer_id: str,
    idempotency_key: str,
    fingerprint: str,
    answer: Callable[[], dict],
) -> Answer:
    """``answer()`` once per (customer, key) within ``IDEMPOTENCY_KEY_TTL``: it places an order
    and returns the body answered for it (with the order's ``id``); a retry with the same
    ``fingerprint`` (the request body's) gets that body back, another fingerprint is
    ``IdempotencyKeyReused``. Runs ``answer()`` in the key's transaction: if it raises,
    nothing is kept."""
    with transaction.atomic():
        now = timezone.now()
        mine = IdempotencyKey.objects.filter(customer_id=customer_id, key=idempotency_key)
        mine.filter(expires_at__lte=now).delete()
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(
                    customer_id=customer_id,
                    key=idempotency_key,
                    fingerprint=fingerprint,
                    expires_at=now + settings.IDEMPOTENCY_KEY_TTL,
                )
        except IntegrityError:
            earlier = mine.get()
            if earlier.fingerprint != fingerprint:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was already used with a different request body."
                ) from None
            return Answer(body=earlier.response_body, replayed=True)
        body = answer()
        record.order_id = body["id"]
        record.response_body = body
        record.save(update_fields=["order", "response_body"])
        return Answer(body=body, replayed=False)

"""A customer's personal data, found and erased (``manage.py erase_customer``).

Orders stay, as the shop's business records: their totals, lines and the stock they took are
unchanged, and so is the country (tax). Who placed them and where they went is removed:
the Cognito ``sub`` becomes an anonymous id (one per erasure, so the orders still group),
the email address a placeholder on a reserved domain, the name and address lines empty.
Everything else that holds the customer's data is erased through ``HOLDERS``, one function
per holder, each returning what it changed: a new holder of personal data (an outbox's rows,
say) adds its function there and is erased, counted and printed like the others.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q

from notifications.services import customer_data_erase
from orders.models import IdempotencyKey, Order

#: What an erased order's email address becomes (RFC 2606's reserved .invalid domain).
ERASED_EMAIL = "erased@erased.invalid"


@dataclass(frozen=True)
class Subject:
    """Who is erased: every Cognito ``sub`` and address found for the request, and their
    orders (found before anything is changed)."""

    customer_ids: frozenset[str]
    emails: frozenset[str]  # lowercased
    order_ids: tuple[int, ...]


def _orders_anonymise(subject: Subject) -> dict[str, int]:
    anonymous = f"erased-{uuid.uuid4().hex}"
    changed = Order.objects.filter(pk__in=subject.order_ids).update(
        customer_id=anonymous,
        customer_email=ERASED_EMAIL,
        shipping_name="",
        shipping_line1="",
        shipping_line2="",
        shipping_city="",
        shipping_postal_code="",
    )
    return {"orders anonymised (totals, lines and stock unchanged)": changed}


def _idempotency_keys_delete(subject: Subject) -> dict[str, int]:
    # Their stored answers repeat the order: address, email.
    deleted, _ = IdempotencyKey.objects.filter(
        Q(customer_id__in=subject.customer_ids) | Q(order_id__in=subject.order_ids)
    ).delete()
    return {"idempotency keys deleted": deleted}


def _notifications_erase(subject: Subject) -> dict[str, int]:
    return customer_data_erase(order_ids=subject.order_ids, emails=subject.emails)


#: Every holder of a customer's personal data in the database, in the order they are erased.
HOLDERS: tuple[Callable[[Subject], dict[str, int]], ...] = (
    _notifications_erase,
    _idempotency_keys_delete,
    _orders_anonymise,
)


def _subject_find(*, customer_ids: set[str], emails: set[str]) -> Subject:
    """The orders of these subs or addresses, and every sub and address they name, until
    nothing new turns up (a customer who changed address has orders under both)."""
    customer_ids, emails = set(customer_ids), {e.strip().lower() for e in emails}
    while True:
        match = Q(customer_id__in=customer_ids)
        for email in emails:
            match |= Q(customer_email__iexact=email)
        found = list(Order.objects.filter(match).values_list("pk", "customer_id", "customer_email"))
        more_ids = {sub for _, sub, _ in found} - customer_ids
        more_emails = {address.lower() for _, _, address in found} - emails
        if not more_ids and not more_emails:
            return Subject(
                frozenset(customer_ids), frozenset(emails), tuple(sorted(pk for pk, _, _ in found))
            )
        customer_ids |= more_ids
        emails |= more_emails


@dataclass(frozen=True)
class ErasureResult:
    subject: Subject
    #: What each holder changed, in the order they ran ("orders anonymised ...": 3, ...).
    counts: dict[str, int]
    dry_run: bool


def customer_erase(
    *, customer_id: str | None = None, email: str | None = None, dry_run: bool = False
) -> ErasureResult:
    """Erase or anonymise everything the database holds about one customer, by Cognito sub,
    email address or both, in one transaction. ``dry_run`` counts the same and rolls back."""
    if not customer_id and not email:
        raise ValueError("a Cognito sub or an email address is needed")
    with transaction.atomic():
        subject = _subject_find(
            customer_ids={customer_id} if customer_id else set(), emails={email} if email else set()
        )
        counts: dict[str, int] = {}
        for holder in HOLDERS:
            counts.update(holder(subject))
        if dry_run:
            transaction.set_rollback(True)
    return ErasureResult(subject=subject, counts=counts, dry_run=dry_run)

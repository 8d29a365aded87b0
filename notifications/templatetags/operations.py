"""The admin index's Operations box: what the outbox holds (``shop.outbox.outbox_stats``)."""

from __future__ import annotations

from django import template

from shop import outbox

register = template.Library()

#: Failing rows listed in the box (the worst first); ``/metrics`` has the whole count.
FAILING_SHOWN = 5


@register.inclusion_tag("admin/operations_outbox.html")
def outbox_summary() -> dict:
    return {"outbox": outbox.outbox_stats(failing_limit=FAILING_SHOWN)}

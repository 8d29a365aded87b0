"""Admin pages for operating the queues: queue health, and the dead-letter queue.

Views only: they parse the form, call one service of ``notifications.dead_letters`` and report
with Django's messages. Pages need staff with ``notifications.view_orderemail``;
redrive and delete need ``notifications.operate_queues``. SQS being down is a page saying so
(HTTP 503), never a server error.
"""

from __future__ import annotations

import re

from django.contrib import messages
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_http_methods

from notifications import dead_letters
from shop.aws import sqs

VIEW_PERMISSION = "notifications.view_orderemail"
OPERATE_PERMISSION = "notifications.operate_queues"
#: Messages shown on the DLQ page (each look adds one to their receive counts).
PAGE_LIMIT = 100
#: Most message ids one form may name.
MAX_SELECTED = 1000
# SQS message ids are UUIDs; anything else in the form is not one of ours.
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9-]{1,100}$")


def _context(site: AdminSite, request: HttpRequest, title: str, **extra) -> dict:
    return {**site.each_context(request), "title": title, **extra}


def _unavailable(
    site: AdminSite, request: HttpRequest, title: str, template: str, exc
) -> HttpResponse:
    context = _context(site, request, title, unavailable=str(exc))
    return TemplateResponse(request, template, context, status=503)


def _selected(request: HttpRequest) -> list[str]:
    ids = [i for i in dict.fromkeys(request.POST.getlist("message_id")) if _MESSAGE_ID.match(i)]
    return ids[:MAX_SELECTED]


def _report(request: HttpRequest, result: dead_letters.DeadLetterResult, done: str) -> None:
    if result.task_handle:
        messages.success(
            request,
            f"Started SQS's redrive of the dead-letter queue to the order queue "
            f"({result.done} message(s) seen when it started).",
        )
    elif result.done or not (result.failed or result.not_found):
        messages.success(request, done.format(n=result.done))
    if result.failed:
        reasons = "; ".join(f"{message_id}: {error}" for message_id, error in result.failures[:5])
        messages.error(request, f"{result.failed} message(s) failed: {reasons}")
    if result.not_found:
        messages.warning(
            request,
            f"{result.not_found} message(s) were no longer in the dead-letter queue.",
        )
    if result.stopped:
        messages.error(request, f"Stopped early: {result.stopped}")


def urls(site: AdminSite, *, prefix: str = "") -> list[URLPattern]:
    """The pages' URLs, each wrapped by ``site.admin_view`` (staff login, CSRF, no cache).

    ``prefix`` is put before each path: ``"notifications/"`` when they are mounted at the
    admin site's root (``/admin/notifications/queue-health/``).
    """

    @require_http_methods(["GET"])
    def queue_health(request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm(VIEW_PERMISSION):
            raise PermissionDenied
        template = "admin/notifications/queue_health.html"
        try:
            stats = dead_letters.queue_health()
        except sqs.QueueUnavailable as exc:
            return _unavailable(site, request, "Queue health", template, exc)
        return TemplateResponse(
            request, template, _context(site, request, "Queue health", queues=stats)
        )

    @require_http_methods(["GET", "POST"])
    def dead_letters_page(request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm(VIEW_PERMISSION):
            raise PermissionDenied
        if request.method == "POST":
            return _act(request)
        template = "admin/notifications/dead_letters.html"
        try:
            rows = dead_letters.dlq_list(limit=PAGE_LIMIT)
        except sqs.QueueUnavailable as exc:
            return _unavailable(site, request, "Dead-letter queue", template, exc)
        context = _context(
            site,
            request,
            "Dead-letter queue",
            rows=rows,
            limit=PAGE_LIMIT,
            can_operate=request.user.has_perm(OPERATE_PERMISSION),
        )
        return TemplateResponse(request, template, context)

    def _act(request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm(OPERATE_PERMISSION):
            raise PermissionDenied
        page = reverse("admin:notifications_dead_letters", current_app=site.name)
        action = request.POST.get("action", "")
        selected = _selected(request)
        actor = request.user.get_username()
        if action not in ("redrive_selected", "redrive_all", "delete_selected"):
            messages.error(request, "Unknown action.")
            return HttpResponseRedirect(page)
        if action != "redrive_all" and not selected:
            messages.warning(request, "Select at least one message first.")
            return HttpResponseRedirect(page)
        if action == "delete_selected" and request.POST.get("confirm") != "yes":
            context = _context(site, request, "Delete dead-lettered messages", selected=selected)
            return TemplateResponse(
                request, "admin/notifications/dead_letters_delete.html", context
            )
        try:
            if action == "delete_selected":
                result = dead_letters.dlq_delete(message_ids=selected, actor=actor)
                _report(request, result, "Deleted {n} message(s) from the dead-letter queue.")
            else:
                ids = selected if action == "redrive_selected" else None
                result = dead_letters.dlq_redrive(message_ids=ids, actor=actor)
                _report(request, result, "Redrove {n} message(s) to the order queue.")
        except sqs.QueueUnavailable as exc:
            messages.error(request, f"SQS cannot be reached, nothing was done: {exc}")
        return HttpResponseRedirect(page)

    return [
        path(
            f"{prefix}queue-health/",
            site.admin_view(queue_health),
            name="notifications_queue_health",
        ),
        path(
            f"{prefix}dead-letters/",
            site.admin_view(dead_letters_page),
            name="notifications_dead_letters",
        ),
    ]

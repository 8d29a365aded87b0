from django import forms
from django.contrib import admin
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from notifications import feedback, selectors, services
from notifications.models import OrderEmail, SuppressedAddress


@admin.register(OrderEmail)
class OrderEmailAdmin(admin.ModelAdmin):
    """Every email of every order (confirmation, shipped, cancelled), one pipeline."""

    list_display = [
        "order",
        "kind",
        "status",
        "attempts",
        "sent_at",
        "short_error",
        "preview_link",
    ]
    list_filter = ["kind", "status", "sent_at"]
    search_fields = ["order__id", "order__customer_email", "ses_messages__message_id"]
    list_select_related = ["order"]
    readonly_fields = [
        "order",
        "kind",
        "status",
        "attempts",
        "last_error",
        "ses_message_ids",
        "sent_at",
        "created_at",
        "updated_at",
        "preview_link",
    ]
    actions = ["resend_emails"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_resend_confirmation_permission(self, request) -> bool:
        return request.user.has_perm("notifications.resend_confirmation")

    @admin.action(description="Resend the selected emails", permissions=["resend_confirmation"])
    def resend_emails(self, request, queryset):
        result = services.email_resend(
            email_ids=queryset.order_by("pk").values_list("pk", flat=True),
            actor=request.user.get_username(),
        )
        self.message_user(request, f"Queued {len(result.queued)} email(s) again.")

    @admin.display(description="Last error")
    def short_error(self, obj: OrderEmail) -> str:
        return (obj.last_error[:80] + "…") if len(obj.last_error) > 80 else obj.last_error

    @admin.display(description="SES message ids (latest first)")
    def ses_message_ids(self, obj: OrderEmail) -> str:
        messages = selectors.email_ses_messages(email_id=obj.pk)
        return (
            format_html_join(
                mark_safe("<br>"),
                "{} ({})",
                ((m.message_id, f"{m.sent_at:%Y-%m-%d %H:%M:%S}") for m in messages),
            )
            or "-"
        )

    @admin.display(description="Preview")
    def preview_link(self, obj: OrderEmail) -> str:
        url = reverse("admin:notifications_orderemail_preview", args=[obj.pk])
        return format_html('<a href="{}" target="_blank">preview email</a>', url)

    def get_urls(self):
        preview = self.admin_site.admin_view(self.preview_view)
        return [
            path("preview/<int:email_id>/", preview, name="notifications_orderemail_preview"),
            *super().get_urls(),
        ]

    def preview_view(self, request, email_id: int):
        """The rendered HTML email, exactly as the worker would send it now."""
        get_object_or_404(OrderEmail, pk=email_id)
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        email = services.email_preview(email_id=email_id)
        response = HttpResponse(email.html, content_type="text/html; charset=utf-8")
        # The email is shown as a document of its own, not run as part of the admin.
        response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
        return response


class SuppressedAddressForm(forms.ModelForm):
    class Meta:
        model = SuppressedAddress
        fields = ["email", "reason", "detail"]

    def clean_email(self) -> str:
        # Lowercased before the form's uniqueness check, as the service stores it.
        return self.cleaned_data["email"].strip().lower()


@admin.register(SuppressedAddress)
class SuppressedAddressAdmin(admin.ModelAdmin):
    """The suppression list: emails to these addresses are not sent.

    Staff with the model's permissions add addresses and delete them (deleting unsuppresses:
    the next email to the address is sent). Entries are not edited; writes go through
    ``notifications.feedback``.
    """

    form = SuppressedAddressForm
    list_display = ["email", "reason", "created_at", "short_detail"]
    list_filter = ["reason", "created_at"]
    search_fields = ["email"]
    ordering = ["-created_at"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Detail")
    def short_detail(self, obj: SuppressedAddress) -> str:
        return (obj.detail[:80] + "…") if len(obj.detail) > 80 else obj.detail

    def save_model(self, request, obj, form, change) -> None:
        saved = feedback.suppression_add(
            email=obj.email,
            reason=obj.reason,
            detail=obj.detail or f"added by {request.user.get_username()} in the admin",
        )
        obj.pk, obj.email, obj.created_at = saved.pk, saved.email, saved.created_at

    def delete_model(self, request, obj) -> None:
        feedback.suppression_remove(email=obj.email)

    def delete_queryset(self, request, queryset) -> None:
        for email in queryset.values_list("email", flat=True):
            feedback.suppression_remove(email=email)

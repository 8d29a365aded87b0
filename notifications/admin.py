from django import forms
from django.contrib import admin
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from notifications import feedback, services
from notifications.models import ConfirmationEmail, SuppressedAddress


@admin.register(ConfirmationEmail)
class ConfirmationEmailAdmin(admin.ModelAdmin):
    list_display = ["order", "status", "attempts", "sent_at", "short_error", "preview_link"]
    list_filter = ["status", "sent_at"]
    search_fields = ["order__id", "order__customer_email", "ses_messages__message_id"]
    list_select_related = ["order"]
    readonly_fields = [
        "order",
        "status",
        "attempts",
        "last_error",
        "ses_message_ids",
        "sent_at",
        "created_at",
        "updated_at",
        "preview_link",
    ]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Last error")
    def short_error(self, obj: ConfirmationEmail) -> str:
        return (obj.last_error[:80] + "…") if len(obj.last_error) > 80 else obj.last_error

    @admin.display(description="SES message ids (latest first)")
    def ses_message_ids(self, obj: ConfirmationEmail) -> str:
        messages = services.confirmation_ses_messages(order_id=obj.order_id)
        return (
            format_html_join(
                mark_safe("<br>"),
                "{} ({})",
                ((m.message_id, f"{m.sent_at:%Y-%m-%d %H:%M:%S}") for m in messages),
            )
            or "-"
        )

    @admin.display(description="Preview")
    def preview_link(self, obj: ConfirmationEmail) -> str:
        url = reverse("admin:notifications_confirmationemail_preview", args=[obj.order_id])
        return format_html('<a href="{}" target="_blank">preview email</a>', url)

    def get_urls(self):
        preview = self.admin_site.admin_view(self.preview_view)
        return [
            path(
                "preview/<int:order_id>/",
                preview,
                name="notifications_confirmationemail_preview",
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request, order_id: int):
        """The rendered HTML email of an order, exactly as the worker would send it."""
        get_object_or_404(ConfirmationEmail, order_id=order_id)
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        email = services.confirmation_preview(order_id=order_id)
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
    """The suppression list: confirmation emails to these addresses are not sent.

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

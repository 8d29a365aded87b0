"""Seeing an order's email without sending it: admin preview and management command."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from orders import services
from tests.factories import ProductFactory, StaffFactory
from tests.pipeline import sent_emails

pytestmark = pytest.mark.django_db


@pytest.fixture
def order():
    ProductFactory(sku="MUG", stock=5)
    return services.order_place(
        customer_id="c",
        customer_email="c@example.com",
        shipping_address=services.ShippingAddress(
            name="<img src=x onerror=alert(1)>",
            line1="1 Main",
            city="T",
            postal_code="1",
            country="US",
        ),
        lines=[services.LineRequest(sku="MUG", quantity=2)],
    )


def test_admin_preview_renders_without_sending(client, order):
    before = len(sent_emails())
    staff = StaffFactory(username="s", is_superuser=True)
    client.force_login(staff)
    page = client.get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    preview_url = f"/admin/notifications/orderemail/preview/{order.emails.get().pk}/"
    assert preview_url in page
    response = client.get(preview_url)
    assert response.status_code == 200
    html = response.content.decode()
    assert f"#{order.pk}" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert len(sent_emails()) == before


def test_preview_needs_staff(client, order):
    response = client.get(f"/admin/notifications/orderemail/preview/{order.emails.get().pk}/")
    assert response.status_code == 302


def test_email_preview_command_writes_files(order, tmp_path):
    call_command("email_preview", str(order.pk), "--output", str(tmp_path / "mail"))
    assert f"#{order.pk}" in (tmp_path / "mail.html").read_text()
    assert "<img src=x onerror=alert(1)>" in (tmp_path / "mail.txt").read_text()
    with pytest.raises(CommandError):
        call_command("email_preview", "999999", "--output", str(tmp_path / "none"))


def test_system_check_reports_broken_templates(settings, tmp_path):
    (tmp_path / "templates" / "emails").mkdir(parents=True)
    (tmp_path / "templates" / "emails" / "x.hbs").write_text("{{#each lines}}<p>{{name}}</p>")
    settings.BASE_DIR = tmp_path
    from notifications.checks import email_templates_check

    errors = email_templates_check()
    assert errors and errors[0].id == "notifications.E001"

"""The order-confirmation email's rendering (notifications.rendering), mostly without a database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pybars
import pytest

from notifications import rendering
from notifications.rendering import (
    HTML_TEMPLATE,
    TEXT_TEMPLATE,
    TemplateError,
    confirmation_render,
    confirmation_render_context,
    money_format,
    template_check,
    template_compiled,
    templates_check,
)


def make_context(**overrides: Any) -> dict[str, Any]:
    shipping = {
        "name": "Ada Lovelace",
        "line1": "1 Main St",
        "line2": "",
        "city": "Springfield",
        "postal_code": "12345",
        "country": "US",
    }
    shipping.update(overrides.pop("shipping", {}))
    context: dict[str, Any] = {
        "order_number": 42,
        "currency": "USD",
        "total": Decimal("1234567.89"),
        "shipping": shipping,
        "lines": [
            {
                "sku": "MUG-1",
                "name": "Coffee mug",
                "quantity": 3,
                "unit_price": Decimal("12.5"),
                "line_total": Decimal("37.50"),
            },
            {
                "sku": "TV-9",
                "name": "Wall television",
                "quantity": 1,
                "unit_price": Decimal("1234530.39"),
                "line_total": Decimal("1234530.39"),
            },
        ],
    }
    context.update(overrides)
    return context


# --- Money ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (Decimal("12.5"), "12.50 USD"),
        (Decimal("0"), "0.00 USD"),
        (Decimal("1234567.89"), "1,234,567.89 USD"),
        (Decimal("0.005"), "0.01 USD"),
        (Decimal("-0.001"), "0.00 USD"),
        ("12.5", "12.50 USD"),
        (" 3 ", "3.00 USD"),
        (7, "7.00 USD"),
    ],
)
def test_money_format(amount: Any, expected: str) -> None:
    assert money_format(amount=amount, currency="USD") == expected


@pytest.mark.parametrize(
    ("amount", "error"), [(1.5, TypeError), (True, TypeError), ("x", ValueError)]
)
def test_money_format_rejects(amount: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        money_format(amount=amount, currency="USD")


def test_money_in_both_parts() -> None:
    context = make_context(total=Decimal("0"))
    email = confirmation_render_context(context=context)
    for part in (email.html, email.text):
        assert "12.50 USD" in part
        assert "37.50 USD" in part
        assert "1,234,530.39 USD" in part
        assert "0.00 USD" in part


# --- Content -------------------------------------------------------------------------------
def test_subject_names_the_order() -> None:
    email = confirmation_render_context(context=make_context(order_number=4711))
    assert "#4711" in email.subject
    assert "#4711" in email.html
    assert "#4711" in email.text


def test_every_line_and_the_total_in_both_parts() -> None:
    email = confirmation_render_context(context=make_context())
    for line in make_context()["lines"]:
        assert line["name"] in email.html
        assert line["name"] in email.text
        assert f"SKU {line['sku']}" in email.html
        assert f"SKU {line['sku']}" in email.text
        total = money_format(amount=line["line_total"], currency="USD")
        assert re.search(
            rf">{line['quantity']}</td>\s*<td[^>]*>[^<]*</td>\s*<td[^>]*>{total}<", email.html
        )
        assert f"{line['quantity']} x " in email.text
        assert f"= {total}" in email.text
    assert "1,234,567.89 USD" in email.html
    assert "Order total: 1,234,567.89 USD" in email.text


def test_address_without_line2_leaves_no_gap() -> None:
    email = confirmation_render_context(context=make_context())
    assert "1 Main St\nSpringfield 12345\nUS\n" in email.text
    assert re.search(r"1 Main St<br>\s*Springfield 12345<br>\s*US\s*</td>", email.html)
    for part in (email.html, email.text):
        assert "None" not in part
    assert "\n\n\n" not in email.text


def test_address_with_line2() -> None:
    email = confirmation_render_context(context=make_context(shipping={"line2": "Apt 4"}))
    assert "1 Main St\nApt 4\nSpringfield 12345\n" in email.text
    assert re.search(r"1 Main St<br>\s*Apt 4<br>\s*Springfield 12345<br>", email.html)


# --- Escaping ------------------------------------------------------------------------------
def test_html_part_escapes_user_text() -> None:
    email = confirmation_render_context(
        context=make_context(shipping={"name": "<script>alert(1)</script>"})
    )
    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html


def test_text_part_is_literal() -> None:
    context = make_context(shipping={"name": "O'Brien & Sons <x>", "line1": 'The "Old" Mill'})
    context["lines"][0]["name"] = "Mugs & <Cups>"
    email = confirmation_render_context(context=context)
    assert "Hello O'Brien & Sons <x>," in email.text
    assert 'The "Old" Mill' in email.text
    assert "- Mugs & <Cups> (SKU MUG-1)" in email.text
    for entity in ("&#x27;", "&amp;", "&lt;", "&gt;", "&quot;"):
        assert entity not in email.text
    # The same values stay escaped in the HTML part.
    assert "O&#x27;Brien &amp; Sons &lt;x&gt;" in email.html
    assert "Mugs &amp; &lt;Cups&gt;" in email.html


def test_text_rendering_leaves_the_context_alone() -> None:
    context = make_context(shipping={"name": "O'Brien"})
    confirmation_render_context(context=context)
    assert context == make_context(shipping={"name": "O'Brien"})


# --- Template check ------------------------------------------------------------------------
def test_template_check_passes_balanced_blocks() -> None:
    source = (
        "{{! a comment with #each }}{{#each lines}}{{#if x}}a{{else}}b{{/if}}{{/each}}{{{raw}}}"
    )
    assert template_check(source) == []


def test_template_check_catches_unclosed_each() -> None:
    problems = template_check("Hi\n{{#each lines}}\n{{name}}\nTotal {{total}}\n")
    assert len(problems) == 1
    assert "line 2" in problems[0]
    assert "#each" in problems[0]


def test_template_check_catches_mismatched_closer() -> None:
    problems = template_check("{{#each lines}}{{#if name}}x{{/each}}{{/if}}")
    assert problems
    assert "'{{/each}}' closes '{{#if}}'" in problems[0]


def test_template_check_catches_stray_closer_unclosed_tag_and_spaced_closer() -> None:
    assert "closes no open block" in template_check("a {{/if}}")[0]
    assert "never closed" in template_check("a {{name b")[0]
    assert "no spaces" in template_check("{{#if a}}x{{/if }}")[0]


def test_real_templates_pass_the_check() -> None:
    assert templates_check() == []


def test_broken_template_fails_at_first_use(settings: Any, tmp_path: Any) -> None:
    emails = tmp_path / "templates" / "emails"
    emails.mkdir(parents=True)
    (emails / "broken.hbs").write_text("{{#each lines}}{{name}}\nTotal {{total}}\n")
    settings.BASE_DIR = tmp_path
    with pytest.raises(TemplateError, match="never closed"):
        template_compiled(name="broken.hbs")
    assert templates_check() and "broken.hbs" in templates_check()[0]


# --- Compile once --------------------------------------------------------------------------
def test_templates_are_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    html = template_compiled(name=HTML_TEMPLATE)
    text = template_compiled(name=TEXT_TEMPLATE)
    assert template_compiled(name=HTML_TEMPLATE) is html
    assert template_compiled(name=TEXT_TEMPLATE) is text

    def no_compiler() -> None:
        raise AssertionError("compiled again")

    monkeypatch.setattr(pybars, "Compiler", no_compiler)
    assert confirmation_render_context(context=make_context()).text


_IMPORTS_PYBARS = """
import sys
import django
django.setup()
import shop.urls  # what a gunicorn worker imports: the admin, the services, notifications
print(f"web: {'pybars' in sys.modules}")
from django.core.management import load_command_class
relay = load_command_class("notifications", "outbox_relay")
relay.check(tags=relay.requires_system_checks)  # what manage.py outbox_relay checks
print(f"relay: {'pybars' in sys.modules}")
from django.core.checks import run_checks
run_checks()  # what a Celery worker runs before it forks its pool
print(f"checked: {'pybars' in sys.modules}")
"""


@pytest.mark.subprocess
def test_only_rendering_or_the_system_check_imports_pybars() -> None:
    """pybars3's import costs a process about 0.8 s of CPU: a web process and the outbox
    relay never pay it; the system check (a worker runs it before forking its pool) does,
    and compiles."""
    process = subprocess.run(
        [sys.executable, "-c", _IMPORTS_PYBARS],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "shop.settings.test"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 0, process.stderr
    assert process.stdout.split() == ["web:", "False", "relay:", "False", "checked:", "True"]


# --- From the database ---------------------------------------------------------------------
def test_confirmation_render_from_an_order(db: None) -> None:
    from tests.factories import OrderFactory, OrderLineFactory, ProductFactory

    mug = ProductFactory(sku="MUG-1", name="Coffee mug", price=Decimal("12.50"), stock=5)
    order = OrderFactory(
        customer_id="cust-1",
        customer_email="obrien@example.com",
        shipping_name="O'Brien & Sons",
        shipping_line1="1 Main St",
        shipping_city="Springfield",
        shipping_postal_code="12345",
        shipping_country="IE",
        total=Decimal("25.00"),
        currency="EUR",
    )
    OrderLineFactory(order=order, product=mug, quantity=2)  # 2 x 12.50 = 25.00

    email = confirmation_render(order=order)

    assert email.subject == f"Your order #{order.pk} is confirmed"
    assert "Hello O'Brien & Sons," in email.text
    assert "O&#x27;Brien &amp; Sons" in email.html
    assert "- Coffee mug (SKU MUG-1)\n  2 x 12.50 EUR = 25.00 EUR" in email.text
    assert "Order total: 25.00 EUR" in email.text
    assert "1 Main St\nSpringfield 12345\nIE\n" in email.text
    assert "25.00 EUR" in email.html


# --- Shipped and cancelled: the same layout ------------------------------------------------
def _shipped(**tracking: str) -> rendering.RenderedEmail:
    context = make_context(shipping={"name": "O'Brien <b>"})
    context["tracking"] = {"carrier": "", "number": "", "url": "", **tracking}
    return rendering.email_render_context(kind="shipped", context=context)


def test_shipped_email_has_the_tracking_link_when_given_and_escapes_user_text() -> None:
    email = _shipped(
        carrier="DHL & <Co>", number="JD01<46>", url='https://track.example/?n=1&x="2"'
    )
    assert email.subject == "Your order #42 has shipped"
    assert 'href="https://track.example/?n=1&amp;x=&quot;2&quot;"' in email.html
    assert "DHL &amp; &lt;Co&gt;" in email.html and "JD01&lt;46&gt;" in email.html
    assert "O&#x27;Brien &lt;b&gt;" in email.html and "<b>" not in email.html
    assert "Your order #42 has shipped with DHL & <Co>." in email.text
    assert "Tracking number: JD01<46>" in email.text
    assert 'Track your parcel: https://track.example/?n=1&x="2"' in email.text
    for entity in ("&amp;", "&lt;", "&quot;", "&#x27;"):
        assert entity not in email.text
    assert "Coffee mug" in email.html and "Coffee mug" in email.text


def test_shipped_email_without_tracking_says_nothing_of_it() -> None:
    email = _shipped()
    assert "Your order #42 has shipped.\n" in email.text
    for part in (email.html, email.text):
        assert "Track" not in part and "Tracking number" not in part
    assert "href=" not in email.html
    assert "\n\n\n" not in email.text


def test_cancelled_email_and_every_kind_share_the_layout() -> None:
    cancelled = rendering.email_render_context(kind="cancelled", context=make_context())
    assert cancelled.subject == "Your order #42 has been cancelled"
    assert "has been cancelled: nothing of it will be shipped" in cancelled.text
    assert "Order total: 1,234,567.89 USD" in cancelled.text
    confirmation = confirmation_render_context(context=make_context())
    layout_tail = "If you have a question, just reply to this email."
    for email in (cancelled, confirmation, _shipped()):
        assert email.html.lstrip().startswith("<!DOCTYPE html>")
        assert f"<title>{email.subject}</title>" in email.html
        assert layout_tail in email.html and layout_tail in email.text
        assert email.text.startswith("Hello ") and email.text.endswith("The Shop team\n")
        assert "\n\n\n" not in email.text


def test_the_confirmation_promises_only_what_the_shop_does() -> None:
    email = confirmation_render_context(context=make_context())
    for part in (email.html, email.text):
        assert "We will email you again when your order ships" in part
        assert "or if it has to be cancelled" in part
    assert set(rendering.EMAIL_KINDS) == {"confirmation", "shipped", "cancelled"}

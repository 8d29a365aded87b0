"""Rendering of the order's emails (confirmation, shipped, cancelled; HTML and plain text)
with pybars3 (Handlebars), every kind in one layout.

Templates live in ``templates/emails/``. Each is compiled once per process, on first use (or by
the system check, before a Celery worker forks its pool), and checked first: pybars3 silently
drops everything after an unclosed block or ``{{``, so a broken template raises
``TemplateError`` instead of sending a truncated email. Helpers are registered once, in
``HELPERS``. The plain-text part is rendered without HTML escaping.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.conf import settings

from orders.models import Order

logger = logging.getLogger(__name__)

HTML_TEMPLATE = "order_confirmation.hbs"
TEXT_TEMPLATE = "order_confirmation.txt.hbs"

Template = Callable[..., str]


class TemplateError(Exception):
    """An email template is broken: it would fail to render or render truncated."""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


def money_format(*, amount: Decimal | str | int, currency: str) -> str:
    """``Decimal("1234.5"), "USD"`` -> ``"1,234.50 USD"``: two decimals, half-up rounding."""
    if isinstance(amount, bool) or not isinstance(amount, Decimal | str | int):
        raise TypeError(f"money amount must be Decimal, str or int, not {type(amount).__name__}")
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount).strip())
    except InvalidOperation:
        raise ValueError(f"not a money amount: {amount!r}") from None
    if not value.is_finite():
        raise ValueError(f"money amount must be finite, not {amount!r}")
    value = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) + 0  # + 0: no "-0.00"
    return f"{value:,.2f} {currency}"


def _pybars():
    """pybars3, imported on first use: its import builds its grammar (about 0.6 s of CPU), which
    a process that renders nothing (gunicorn, most management commands) need not pay. A worker
    still pays it before it forks its pool: its system check compiles the templates."""
    import pybars

    return pybars


def _money_helper(this: Any, amount: Any, currency: Any) -> str:
    """``{{money amount currency}}``. Arguments may arrive as ``strlist`` (see ``_unescaped``)."""
    if isinstance(amount, _pybars().strlist):
        amount = str(amount)
    return money_format(amount=amount, currency=str(currency).strip())


# The one place helpers are registered; every render gets these (the text part through
# `_unescaped_helper`, which only changes how their result is escaped).
HELPERS: dict[str, Callable[..., Any]] = {"money": _money_helper}


# --- Plain text without HTML entities ---------------------------------------------------
# pybars3 0.9.7 has no switch to turn escaping off (no `noEscape` compile option as in
# Handlebars.js): every `{{x}}` goes through `pybars._compiler.prepare(value, True)`, which calls
# the module-global `escape`. Patching that global would change every template in the process.
# The one supported bypass is the `strlist` type (pybars' "safe string", exported by the
# package): `prepare` returns it unescaped. So the text part is rendered with every string of
# its context, and every helper result, wrapped in a `strlist`. Empty strings stay `""`, so
# `{{#if}}` keeps treating them as false (a one-element list would be true).
def _unescaped(value: Any) -> Any:
    strlist = _pybars().strlist
    if isinstance(value, strlist):  # already safe (a list: must not be walked as one)
        return value
    if isinstance(value, str):
        return strlist([value]) if value else value
    if isinstance(value, Mapping):
        return {key: _unescaped(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_unescaped(item) for item in value]
    return value


def _unescaped_helper(helper: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(helper)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return _unescaped(helper(*args, **kwargs))

    return wrapper


_TEXT_HELPERS = {name: _unescaped_helper(helper) for name, helper in HELPERS.items()}


# --- Templates: check, compile once ---------------------------------------------------------
# A tag as pybars reads it: `{{` up to the first `}}`, comments `{{! ... }}` included.
_TAG_RE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_BLOCK_RE = re.compile(r"([#^/])\s*([^\s}]*)(.*)", re.DOTALL)


def _line(source: str, position: int) -> int:
    return source.count("\n", 0, position) + 1


def template_check(source: str) -> list[str]:
    """Problems pybars3 would not report: unclosed `{{`, unbalanced or misnested blocks."""
    problems: list[str] = []
    opened: list[tuple[str, int]] = []  # (block name, line)
    position = 0
    while (start := source.find("{{", position)) != -1:
        match = _TAG_RE.match(source, start)
        if match is None:
            problems.append(f"line {_line(source, start)}: '{{{{' is never closed by '}}}}'")
            break
        position = match.end()
        inner = match.group(1).strip("~{&")
        block = _BLOCK_RE.fullmatch(inner.strip())
        if inner.startswith("!") or block is None or not block.group(2):
            continue  # comment, expression, `{{^}}` / `{{else}}`
        sigil, name, rest = block.groups()
        line = _line(source, start)
        if sigil != "/":
            opened.append((name, line))
        elif rest.strip() or inner != inner.strip() or inner[1:] != name:
            problems.append(f"line {line}: write the closer as '{{{{/{name}}}}}' (no spaces)")
        elif not opened:
            problems.append(f"line {line}: '{{{{/{name}}}}}' closes no open block")
        elif opened[-1][0] != name:
            open_name, open_line = opened.pop()
            problems.append(
                f"line {line}: '{{{{/{name}}}}}' closes '{{{{#{open_name}}}}}' of line {open_line}"
            )
        else:
            opened.pop()
    problems.extend(
        f"line {line}: '{{{{#{name}}}}}' is never closed (pybars would drop the rest)"
        for name, line in reversed(opened)
    )
    return problems


def _templates_dir() -> Path:
    return Path(settings.BASE_DIR) / "templates" / "emails"


# pybars' Compiler keeps its code builder in class state: compile under one lock.
_compile_lock = threading.Lock()


def _compile(*, path: Path) -> Template:
    source = path.read_text(encoding="utf-8")
    problems = template_check(source)
    if problems:
        raise TemplateError(f"{path.name}: " + "; ".join(problems))
    pybars = _pybars()
    try:
        template = pybars.Compiler().compile(source)
    except pybars.PybarsError as exc:
        raise TemplateError(f"{path.name}: {exc}") from exc
    _compilations[(os.getpid(), path.name)] += 1
    return template


_compiled: dict[Path, Template] = {}
# Compilations per (pid, template name). A forked pool child inherits its parent's entries,
# so it can tell what it compiled itself from what its parent compiled for it.
_compilations: Counter[tuple[int, str]] = Counter()
_announced: set[tuple[int, Path]] = set()


def template_compiled(*, name: str) -> Template:
    """The compiled template ``templates/emails/<name>``: compiled on first use, then cached.

    A template that fails its check raises ``TemplateError`` here, on every use (errors are
    not cached).
    """
    path = _templates_dir() / name
    with _compile_lock:
        if path not in _compiled:
            _compiled[path] = _compile(path=path)
        if (pid := os.getpid(), path) not in _announced:
            # Once per process and template (logged at its first use, never at start-up).
            _announced.add((pid, path))
            parent = os.getppid()
            logger.info(
                "email template %s in use in pid %d: compiled %d time(s) here, "
                "%d in parent pid %d",
                name, pid, _compilations[(pid, name)], _compilations[(parent, name)], parent,
            )  # fmt: skip
        return _compiled[path]


def templates_check() -> list[str]:
    """Problems of every ``*.hbs`` under ``templates/emails/`` (structure, then syntax).

    Templates that pass are kept as compiled, if the process has none yet: a Celery worker
    runs the system checks before it forks its pool, so the pool's children compile nothing.
    """
    problems: list[str] = []
    for path in sorted(_templates_dir().glob("*.hbs")):
        try:
            with _compile_lock:
                _compiled.setdefault(path, _compile(path=path))
        except TemplateError as exc:
            problems.append(str(exc))
    return problems


# --- The order's emails: one layout, a template per kind -------------------------------------
#: Every part is ``layout.hbs`` / ``layout.txt.hbs`` around the kind's template (the partial
#: ``body``); files named ``_<name>.hbs`` are the shared pieces (``{{> items}}``, ...).
LAYOUT_HTML = "layout.hbs"
LAYOUT_TEXT = "layout.txt.hbs"
PARTIALS = ("items", "address")


@dataclass(frozen=True)
class EmailKindTemplate:
    template: str  # "order_confirmation" -> order_confirmation.hbs and .txt.hbs
    subject: str  # formatted with the order number
    heading: str
    closing: str = ""  # the sentence before the sign-off, if any
    address_title: str = "Shipping to"


EMAIL_KINDS: dict[str, EmailKindTemplate] = {
    "confirmation": EmailKindTemplate(
        template="order_confirmation",
        subject="Your order #{order_number} is confirmed",
        heading="Thank you for your order",
        # True of the shop: staff marking it shipped or cancelled sends those emails.
        closing="We will email you again when your order ships (with its tracking link when "
        "the carrier gives one), or if it has to be cancelled.",
    ),
    "shipped": EmailKindTemplate(
        template="order_shipped",
        subject="Your order #{order_number} has shipped",
        heading="Your order is on its way",
        address_title="Shipped to",
    ),
    "cancelled": EmailKindTemplate(
        template="order_cancelled",
        subject="Your order #{order_number} has been cancelled",
        heading="Your order has been cancelled",
    ),
}


def _part(name: str, *, text: bool) -> Template:
    return template_compiled(name=f"{name}.txt.hbs" if text else f"{name}.hbs")


def email_render_context(*, kind: str, context: dict[str, Any]) -> RenderedEmail:
    """Render both parts of an email of ``kind`` from an ``email_context``-shaped dict (no
    database needed). The subject, heading and closing are the shop's text, not the
    customer's; the customer's text in ``context`` is escaped in the HTML part."""
    spec = EMAIL_KINDS[kind]
    subject = spec.subject.format(order_number=context["order_number"])
    full = {
        **context,
        "subject": subject,
        "heading": spec.heading,
        "closing": spec.closing,
        "address_title": spec.address_title,
    }
    parts = []
    for text in (False, True):
        partials = {name: _part(f"_{name}", text=text) for name in PARTIALS}
        partials["body"] = _part(spec.template, text=text)
        layout = template_compiled(name=LAYOUT_TEXT if text else LAYOUT_HTML)
        if text:
            parts.append(layout(_unescaped(full), helpers=_TEXT_HELPERS, partials=partials))
        else:
            parts.append(layout(full, helpers=HELPERS, partials=partials))
    return RenderedEmail(subject=subject, html=parts[0], text=parts[1])


def email_context(*, kind: str, order: Order) -> dict[str, Any]:
    """A plain dict of what an email of ``kind`` shows; money values stay ``Decimal``."""
    context = confirmation_context(order=order)
    if kind == "shipped":
        context["tracking"] = {
            "carrier": order.carrier,
            "number": order.tracking_number,
            "url": order.tracking_url,
        }
    return context


def email_render(*, kind: str, order: Order) -> RenderedEmail:
    return email_render_context(kind=kind, context=email_context(kind=kind, order=order))


# --- The confirmation email ---------------------------------------------------------------
def confirmation_context(*, order: Order) -> dict[str, Any]:
    """A plain dict of what the email shows; money values stay ``Decimal``."""
    return {
        "order_number": order.pk,
        "currency": order.currency,
        "total": order.total,
        "shipping": {
            "name": order.shipping_name,
            "line1": order.shipping_line1,
            "line2": order.shipping_line2.strip(),
            "city": order.shipping_city,
            "postal_code": order.shipping_postal_code,
            "country": order.shipping_country,
        },
        "lines": [
            {
                "sku": line.sku,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "line_total": line.line_total,
            }
            for line in order.lines.all()
        ],
    }


def confirmation_render_context(*, context: dict[str, Any]) -> RenderedEmail:
    """Render both parts from a ``confirmation_context``-shaped dict (no database needed)."""
    return email_render_context(kind="confirmation", context=context)


def confirmation_render(*, order: Order) -> RenderedEmail:
    return email_render(kind="confirmation", order=order)

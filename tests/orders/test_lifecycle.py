"""An order's life after it is placed: confirmed by its email, shipped or cancelled by staff.

Every allowed move is recorded (from, to, who, when, note); every other move is refused with
a sentence and changes nothing. A cancelled order's stock comes back through recorded
adjustments, exactly, even when new orders for the same product race the cancel (PostgreSQL).
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from django.db import connection, connections, transaction

from notifications import sending as notification_sending
from orders import actions, lifecycle, services
from orders.models import Order, OrderStatus, OrderStatusChange, Product, StockAdjustment
from tests.factories import ProductFactory
from tests.helpers import auth, order_body

ADDRESS = services.ShippingAddress(
    name="A", line1="1 Main St", city="Town", postal_code="1", country="US"
)
ALLOWED = {
    (OrderStatus.PLACED, OrderStatus.CONFIRMED),
    (OrderStatus.PLACED, OrderStatus.CANCELLED),
    (OrderStatus.CONFIRMED, OrderStatus.SHIPPED),
    (OrderStatus.CONFIRMED, OrderStatus.CANCELLED),
}
FORBIDDEN = sorted(set(itertools.product(OrderStatus.values, repeat=2)) - ALLOWED)


def place(*lines: tuple[str, int], customer: str = "c") -> Order:
    return services.order_place(
        customer_id=customer,
        customer_email=f"{customer}@example.com",
        shipping_address=ADDRESS,
        lines=[services.LineRequest(sku=sku, quantity=q) for sku, q in lines],
    )


def stock(sku: str) -> int:
    return Product.objects.get(sku=sku).stock


def changes(order: Order) -> list[tuple[str, str, str]]:
    return [
        (c.from_status, c.to_status, c.actor)
        for c in OrderStatusChange.objects.filter(order=order).order_by("id")
    ]


def with_status(status: str) -> Order:
    """An order put straight into ``status`` (the test's setup, not a move)."""
    if not Product.objects.filter(sku="MUG").exists():
        ProductFactory(sku="MUG", stock=1000)
    order = place(("MUG", 1))
    Order.objects.filter(pk=order.pk).update(status=status)
    return Order.objects.get(pk=order.pk)


@pytest.mark.django_db
def test_placed_confirmed_shipped_each_move_recorded_with_who():
    ProductFactory(sku="MUG", stock=10)
    order = place(("MUG", 2))
    assert order.status == OrderStatus.PLACED and changes(order) == []

    assert actions.order_confirmed(order_id=order.pk).status == OrderStatus.CONFIRMED
    shipped = lifecycle.order_ship(
        order_id=order.pk,
        actor="staffer",
        tracking=lifecycle.Tracking(
            carrier=" DHL ", number="JD0146", url="https://track.example/JD0146"
        ),
    )

    order.refresh_from_db()
    assert order.status == shipped.status == OrderStatus.SHIPPED
    assert (order.carrier, order.tracking_number, order.tracking_url) == (
        "DHL",
        "JD0146",
        "https://track.example/JD0146",
    )
    assert order.shipped_at is not None and order.cancelled_at is None
    assert changes(order) == [
        ("placed", "confirmed", "worker"),
        ("confirmed", "shipped", "staffer"),
    ]
    assert stock("MUG") == 8  # shipping gives nothing back


@pytest.mark.django_db
@pytest.mark.parametrize("start", [OrderStatus.PLACED, OrderStatus.CONFIRMED])
def test_placed_or_confirmed_can_be_cancelled(start):
    order = with_status(start)
    cancelled = lifecycle.order_cancel(order_id=order.pk, actor="staffer", note="customer asked")
    assert cancelled.status == OrderStatus.CANCELLED
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED and order.cancelled_at is not None
    change = OrderStatusChange.objects.get(order=order)
    assert (change.from_status, change.to_status, change.actor, change.note) == (
        start,
        "cancelled",
        "staffer",
        "customer asked",
    )


@pytest.mark.django_db
@pytest.mark.parametrize(("start", "target"), FORBIDDEN)
def test_every_other_move_is_refused_and_changes_nothing(start, target):
    order = with_status(start)
    before = stock("MUG")
    with pytest.raises(actions.TransitionRefused) as refused:
        if target == OrderStatus.SHIPPED:
            lifecycle.order_ship(order_id=order.pk, actor="staffer")
        elif target == OrderStatus.CANCELLED:
            lifecycle.order_cancel(order_id=order.pk, actor="staffer")
        else:
            actions.order_status_change(order_id=order.pk, to_status=target, actor="staffer")
    message = refused.value.message
    assert message.startswith(f"Order #{order.pk} cannot be ")
    assert start in message
    order.refresh_from_db()
    assert order.status == start
    assert changes(order) == []
    assert stock("MUG") == before
    assert not StockAdjustment.objects.filter(reason="returned").exists()


@pytest.mark.django_db
def test_the_refusals_staff_meet_most_say_why():
    shipped = with_status(OrderStatus.SHIPPED)
    with pytest.raises(actions.TransitionRefused, match="it has shipped already"):
        lifecycle.order_cancel(order_id=shipped.pk, actor="staffer")
    placed = with_status(OrderStatus.PLACED)
    with pytest.raises(actions.TransitionRefused, match="only a confirmed order can ship"):
        lifecycle.order_ship(order_id=placed.pk, actor="staffer")
    with pytest.raises(actions.TransitionRefused, match="no order #999999"):
        lifecycle.order_cancel(order_id=999999, actor="staffer")


@pytest.mark.django_db
@pytest.mark.parametrize("status", [OrderStatus.CONFIRMED, OrderStatus.SHIPPED, "cancelled"])
def test_a_confirmation_sent_again_moves_no_order_past_placed(status):
    """A resend or redrive of the confirmation is not a move: the worker's entry point leaves
    a confirmed, shipped or cancelled order alone (and does not fail the send)."""
    order = with_status(status)
    assert actions.order_confirmed(order_id=order.pk) is None
    order.refresh_from_db()
    assert order.status == status and changes(order) == []


@pytest.mark.django_db
def test_the_worker_confirms_the_order_through_orders_actions():
    """The send (in process, pytest-django's locmem backend) moves the order with a record
    saying the worker did it: ``notifications`` no longer writes ``Order.status`` itself."""
    ProductFactory(sku="MUG", stock=5)
    order = place(("MUG", 1), customer="alice")  # verified in the emulator's SES
    outcome = notification_sending.confirmation_send(order_id=order.pk, attempt=1)
    assert outcome.outcome == "sent"
    order.refresh_from_db()
    assert order.status == OrderStatus.CONFIRMED
    assert changes(order) == [("placed", "confirmed", "worker")]
    # A second delivery of the same message: skipped, nothing recorded twice.
    assert notification_sending.confirmation_send(order_id=order.pk).outcome == "skipped"
    assert changes(order) == [("placed", "confirmed", "worker")]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,<b>x</b>",
        "ftp://files.example/parcel",
        "/relative/path",
        "https://",
        "https://track.example/a b",
        "https://track.example/\x00",
    ],
)
def test_a_tracking_url_must_be_http_or_https(url):
    order = with_status(OrderStatus.CONFIRMED)
    with pytest.raises(actions.TrackingRefused):
        lifecycle.order_ship(
            order_id=order.pk, actor="staffer", tracking=lifecycle.Tracking(url=url)
        )
    order.refresh_from_db()
    assert order.status == OrderStatus.CONFIRMED and order.tracking_url == ""


@pytest.mark.django_db
def test_tracking_details_are_optional():
    order = with_status(OrderStatus.CONFIRMED)
    lifecycle.order_ship(order_id=order.pk, actor="staffer")
    order.refresh_from_db()
    assert order.status == OrderStatus.SHIPPED
    assert (order.carrier, order.tracking_number, order.tracking_url) == ("", "", "")


@pytest.mark.django_db
def test_cancel_returns_each_lines_stock_through_recorded_adjustments():
    ProductFactory(sku="MUG", stock=10)
    ProductFactory(sku="TEA", stock=4)
    order = place(("TEA", 3), ("MUG", 2))
    assert (stock("MUG"), stock("TEA")) == (8, 1)

    lifecycle.order_cancel(order_id=order.pk, actor="staffer", note="duplicate order")

    assert (stock("MUG"), stock("TEA")) == (10, 4)
    returned = {
        a.product.sku: (a.delta, a.reason, a.actor, a.stock_after, a.note)
        for a in StockAdjustment.objects.filter(reason="returned")
    }
    note = f"order #{order.pk} cancelled: duplicate order"
    assert returned == {
        "MUG": (2, "returned", "staffer", 10, note),
        "TEA": (3, "returned", "staffer", 4, note),
    }
    # Cancelling again is refused and gives nothing back twice.
    with pytest.raises(actions.TransitionRefused):
        lifecycle.order_cancel(order_id=order.pk, actor="staffer")
    assert (stock("MUG"), stock("TEA")) == (10, 4)
    assert StockAdjustment.objects.filter(reason="returned").count() == 2


@pytest.mark.django_db
def test_the_api_shows_status_and_tracking_once_shipped_to_its_customer_only(
    api_client, alice_token, bob_token
):
    ProductFactory(sku="MUG", stock=10)
    response = api_client.post(
        "/api/orders/", order_body(("MUG", 1)), format="json", **auth(alice_token)
    )
    assert response.status_code == 201
    created = response.json()
    assert (created["status"], created["tracking"], created["cancelled_at"]) == (
        "placed",
        None,
        None,
    )
    url = f"/api/orders/{created['id']}/"

    actions.order_confirmed(order_id=created["id"])
    assert api_client.get(url, **auth(alice_token)).json()["tracking"] is None
    lifecycle.order_ship(
        order_id=created["id"],
        actor="staffer",
        tracking=lifecycle.Tracking(carrier="UPS", number="1Z999", url="http://ups.example/1Z"),
    )

    body = api_client.get(url, **auth(alice_token)).json()
    assert body["status"] == "shipped"
    tracking = body["tracking"]
    assert {k: tracking[k] for k in ("carrier", "number", "url")} == {
        "carrier": "UPS",
        "number": "1Z999",
        "url": "http://ups.example/1Z",
    }
    assert tracking["shipped_at"]
    listed = api_client.get("/api/orders/", **auth(alice_token)).json()["results"][0]
    assert listed["tracking"] == tracking
    # Someone else's order stays a 404, tracking or not.
    assert api_client.get(url, **auth(bob_token)).status_code == 404


# --- a cancel racing new orders for the same product (PostgreSQL) ----------------------------


def _waiting_on_locks(pids: list[int]) -> int:
    """How many of these backends wait on a lock. Only the racers' own: a backend left by an
    earlier test (a killed process's, still queued on some lock) must not count."""
    with connection.cursor() as cursor:
        # Inside a transaction PostgreSQL keeps its first snapshot of the activity: drop it.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE pid = ANY(%s) AND wait_event_type = 'Lock'",
            [pids],
        )
        return cursor.fetchone()[0]


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _wait_until(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the racers never queued on the product.s lock"
        time.sleep(0.01)


def _race(product: Product, cancel_id: int, *, cancel_first: bool) -> dict[str, str]:
    """Cancel ``cancel_id`` and place orders for 2 and 5 of ``product``, each from its own
    thread and connection, all queued on the product's row lock at once.

    The test holds that lock itself (``SELECT ... FOR UPDATE`` on its own connection) and
    lets the racers in one group at a time until PostgreSQL shows each waiting for it (the
    cancel first, or the two orders first), then commits: the first in the queue gets the
    row first, and the others then race for it, truly one against the other."""
    results: dict[str, str] = {}
    pids: list[int] = []  # each racer's backend, noted before it queues

    def run(name: str, action) -> None:
        try:
            pids.append(_backend_pid())
            action()
            results[name] = "done"
        except services.InsufficientStock:
            results[name] = "short"
        except Exception as exc:  # anything else is a bug the test must show
            results[name] = f"error: {exc!r}"
        finally:
            connections.close_all()

    cancel = {"cancel": lambda: lifecycle.order_cancel(order_id=cancel_id, actor="racer")}
    orders = {
        f"order-{q}": lambda q=q: place((product.sku, q), customer=f"racer-{q}") for q in (2, 5)
    }
    groups = [cancel, orders] if cancel_first else [orders, cancel]
    threads = []
    with transaction.atomic():
        Product.objects.select_for_update().get(pk=product.pk)
        for group in groups:
            for item in group.items():
                threads.append(threading.Thread(target=run, args=item))
                threads[-1].start()
            queued = len(threads)
            _wait_until(lambda queued=queued: _waiting_on_locks(pids) == queued)
    for thread in threads:
        thread.join(60)
    return results


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL's row locks")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("cancel_first", [True, False], ids=["cancel-first", "orders-first"])
def test_a_cancel_racing_new_orders_for_the_same_product_leaves_the_stock_exact(cancel_first):
    """Stock 7; an order for 4 (stock 3) is cancelled while orders for 2 and 5 queue on the
    same product's row lock. Cancel first: its 4 units are back (7), both orders fit, stock
    0. Orders first: 2 fits (1 left) and the cancel's 4 come back (5), and the order for 5
    fits only if the cancel got there before it. PostgreSQL keeps the queue only for the
    row's first holder: once it has updated the row, those still waiting lock the row's new
    version in whatever order they reach it, so after the order for 2 the order for 5 and
    the cancel may come either way (and the order for 5 may be the first, and fail).
    Either way the stock is exactly 7 less what the surviving orders took, the cancel's
    adjustment records the stock it really left, nothing is oversold or given back twice."""
    for round_ in range(3):
        product = ProductFactory(sku=f"RACE-{cancel_first:d}-{round_}", stock=7)
        victim = place((product.sku, 4), customer="victim")
        results = _race(product, victim.pk, cancel_first=cancel_first)

        assert not [r for r in results.values() if r.startswith("error")], results
        assert results["cancel"] == results["order-2"] == "done", results
        if cancel_first:
            assert results["order-5"] == "done", results
        else:
            assert results["order-5"] in ("done", "short"), results
        taken = 2 + (5 if results["order-5"] == "done" else 0)
        product.refresh_from_db()
        assert product.stock == 7 - taken, results
        (returned,) = StockAdjustment.objects.filter(product=product, reason="returned")
        assert (returned.delta, returned.actor) == (4, "racer")
        assert returned.stock_after == (7 if cancel_first else 5)
        assert Order.objects.get(pk=victim.pk).status == OrderStatus.CANCELLED
        placed = Order.objects.filter(lines__product=product, customer_id__startswith="racer")
        assert sum(o.lines.get().quantity for o in placed) == taken

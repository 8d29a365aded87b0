"""/metrics: who may read it, the counters, the live queue gauges, several processes."""

from __future__ import annotations

import urllib.request

import pytest
from django.conf import settings

from shop import aws
from tests.factories import ProductFactory, StaffFactory, UserFactory
from tests.helpers import emulator_token, order_body, samples, scrape
from tests.pipeline import DLQ_URL, WebServer, free_port

pytestmark = pytest.mark.django_db

ELSEWHERE = "203.0.113.9"  # TEST-NET-3: never in the allow-list


ORDERS_PLACED = ("shop_orders_placed_total", ())


# --- who may read -------------------------------------------------------------------------


def test_anonymous_client_from_elsewhere_is_refused(client):
    response = client.get("/metrics", REMOTE_ADDR=ELSEWHERE)
    assert response.status_code == 403
    assert b"shop_" not in response.content


def test_x_forwarded_for_is_not_trusted(client):
    response = client.get("/metrics", REMOTE_ADDR=ELSEWHERE, HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert response.status_code == 403


def test_production_default_allows_no_address(client, settings):
    settings.METRICS_ALLOWED_IPS = []
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


def test_development_default_allows_loopback(client):
    assert settings.METRICS_ALLOWED_IPS == ["127.0.0.1", "::1"]
    assert ORDERS_PLACED in scrape(client, REMOTE_ADDR="127.0.0.1")
    assert ORDERS_PLACED in scrape(client, REMOTE_ADDR="::1")


def test_allowed_network_is_served_by_ip_over_http(client, settings):
    """Prometheus scrapes a container by IP over plain HTTP: no ALLOWED_HOSTS, no redirect."""
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    settings.ALLOWED_HOSTS = ["shop.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    assert ORDERS_PLACED in scrape(client, REMOTE_ADDR="10.1.2.3", HTTP_HOST="10.0.0.7:8000")
    assert ORDERS_PLACED in scrape(client, REMOTE_ADDR="::ffff:10.1.2.3", HTTP_HOST="10.0.0.7:8000")
    outside = client.get(
        "/metrics", REMOTE_ADDR="11.1.2.3", HTTP_HOST="shop.example.com", secure=True
    )
    assert outside.status_code == 403


def test_staff_session_reads_metrics_and_others_do_not(client):
    customer = UserFactory(username="someone", password="x")
    client.force_login(customer)
    assert client.get("/metrics", REMOTE_ADDR=ELSEWHERE).status_code == 403

    staff = StaffFactory(username="operator", password="x")
    client.force_login(staff)
    assert ORDERS_PLACED in scrape(client, REMOTE_ADDR=ELSEWHERE)


def test_metrics_are_read_only(client):
    assert client.post("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 405


# --- counters -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_orders_placed_counts_committed_orders_only(client, alice, queues):
    ProductFactory(sku="MUG", stock=3)
    before = scrape(client)[ORDERS_PLACED]

    assert alice.post("/api/orders/", order_body(("MUG", 2)), format="json").status_code == 201
    assert scrape(client)[ORDERS_PLACED] == before + 1

    # Refused orders (no stock, unknown SKU) are not counted.
    assert alice.post("/api/orders/", order_body(("MUG", 2)), format="json").status_code == 409
    assert alice.post("/api/orders/", order_body(("NOPE", 1)), format="json").status_code == 400
    assert scrape(client)[ORDERS_PLACED] == before + 1


def test_failure_reasons_are_shown_before_any_failure(client):
    values = scrape(client)
    for reason in ("refused", "ses_error", "time_limit", "other"):
        assert (
            "shop_confirmation_attempts_failed_total",
            (("reason", reason),),
        ) in values
    assert ("shop_confirmation_emails_sent_total", ()) in values


# --- live queue gauges --------------------------------------------------------------------


def _depth(values, role: str, state: str) -> float:
    matches = [
        value
        for (name, labels), value in values.items()
        if name == "shop_sqs_messages" and ("role", role) in labels and ("state", state) in labels
    ]
    assert len(matches) == 1, values
    return matches[0]


def test_queue_gauges_are_read_from_sqs_at_scrape_time(client, queues):
    sqs = aws.client("sqs")
    for body in ("metrics-test-1", "metrics-test-2", "metrics-test-3"):
        sqs.send_message(QueueUrl=DLQ_URL, MessageBody=body)
    held = sqs.receive_message(QueueUrl=DLQ_URL, MaxNumberOfMessages=1, VisibilityTimeout=60)
    handle = held["Messages"][0]["ReceiptHandle"]
    try:
        values = scrape(client)
    finally:
        sqs.change_message_visibility(QueueUrl=DLQ_URL, ReceiptHandle=handle, VisibilityTimeout=0)

    assert values[("shop_sqs_up", ())] == 1
    assert _depth(values, "dead-letter", "visible") == 2
    assert _depth(values, "dead-letter", "in_flight") == 1
    assert _depth(values, "dead-letter", "delayed") == 0
    assert _depth(values, "orders", "visible") == 0
    queue_names = {dict(labels)["queue"] for name, labels in values if name == "shop_sqs_messages"}
    assert queue_names == {
        settings.ORDER_QUEUE_URL.rsplit("/", 1)[-1],
        DLQ_URL.rsplit("/", 1)[-1],
    }


def test_sqs_unreachable_is_a_gauge_not_an_error(client, settings):
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"  # a closed port
    values = scrape(client)
    assert values[("shop_sqs_up", ())] == 0
    assert not [name for name, _ in values if name == "shop_sqs_messages"]
    assert ORDERS_PLACED in values


# --- several processes --------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.subprocess
@pytest.mark.django_db(transaction=True)
def test_gunicorn_in_multiprocess_mode_counts_its_workers_orders(tmp_path, queues):
    metrics_dir = tmp_path / "metrics"
    web = WebServer(
        tmp_path / "web.log",
        env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "METRICS_ALLOWED_IPS": "127.0.0.1"},
    ).start()
    try:
        ProductFactory(sku="MUG", stock=5)
        status, body = web.request(
            "POST", "/api/orders/", order_body(("MUG", 1)), token=emulator_token()
        )
        assert status == 201, body
        with urllib.request.urlopen(f"{web.url}/metrics", timeout=30) as response:
            values = samples(response.read().decode())
    finally:
        web.stop()

    assert values[ORDERS_PLACED] == 1
    assert values[("shop_sqs_up", ())] == 1
    # The order's confirmation waits in the outbox (no relay runs here), not on the queue.
    assert values[("shop_outbox_pending", ())] == 1
    assert _depth(values, "orders", "visible") == 0
    assert any(path.name.startswith("counter_") for path in metrics_dir.iterdir())

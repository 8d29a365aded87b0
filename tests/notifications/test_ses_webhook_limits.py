"""The SES events webhook does no outbound work for strangers, and its certificate fetches are
few, bounded and remembered; no log line carries a customer's address whole.

The loopback SNS (tests/notifications/loopback_sns.py: HTTPS, a test CA, signing like SNS)
counts every connection made to it: a stranger's message must add none.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import threading
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from notifications.models import EmailStatus, OrderEmail
from shop.aws import sns
from shop.observability.logging import email_addresses_mask
from tests.factories import ProductFactory
from tests.notifications.loopback_sns import (
    PEM_PATH,
    SIGNED,
    TOPIC,
    URL,
    Clock,
    bounce_event,
    delivery_event,
    notification,
    post,
    record_of,
    sent_order,
    sign,
    unique,
)
from tests.pipeline import WebServer, wait_for

# The loopback SNS trusted, emails sent through the emulator's SES (notifications/conftest.py).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fake_sns_trusted")]
FOREIGN_TOPIC = "arn:aws:sns:us-east-1:999999999999:not-ours"


def _pem(n: int) -> str:
    """A certificate path of SNS's shape, different for each ``n``."""
    return f"/SimpleNotificationService-{n:032x}.pem"


def test_foreign_and_badly_shaped_messages_make_no_connection(client, fake_sns):
    to = unique("stranger")
    order, message_id = sent_order(to)
    event = bounce_event(message_id, to)
    for n in range(20):
        fake_sns.held.add(_pem(n))  # fetching any of these would hang
        assert post(client, notification(fake_sns, event, TopicArn=FOREIGN_TOPIC)) == 400
        wrong = fake_sns.url(_pem(n)) + "?x=1"
        assert post(client, notification(fake_sns, event, cert_url=wrong)) == 400
    assert fake_sns.connections == 0 and fake_sns.requests == []
    assert record_of(order).status == EmailStatus.SENT


def test_certificate_fetches_are_capped_per_minute(client, fake_sns, monkeypatch):
    """Messages of our topic naming ever new (well-shaped) certificate URLs: the first few
    are fetched (404: refused), the rest of the minute is answered 503 without a fetch."""
    clock = Clock(monkeypatch)
    to = unique("capped")
    _, message_id = sent_order(to)
    event = delivery_event(message_id, to)
    answers = [
        post(client, notification(fake_sns, event, cert_url=fake_sns.url(_pem(n))))
        for n in range(sns.CERT_FETCHES_PER_MINUTE + 5)
    ]
    assert answers == [400] * sns.CERT_FETCHES_PER_MINUTE + [503] * 5
    assert len(fake_sns.requests) == sns.CERT_FETCHES_PER_MINUTE
    # A real message with the certificate already fetched is not held up by the cap...
    sns.certificate_cache_clear()
    assert post(client, notification(fake_sns, event)) == 200
    # ...and a minute later new URLs are fetched again.
    for n in range(sns.CERT_FETCHES_PER_MINUTE - 1):
        post(client, notification(fake_sns, event, cert_url=fake_sns.url(_pem(100 + n))))
    assert post(client, notification(fake_sns, event, cert_url=fake_sns.url(_pem(200)))) == 503
    clock.advance(61)
    assert post(client, notification(fake_sns, event, cert_url=fake_sns.url(_pem(201)))) == 400


def test_one_certificate_fetch_at_a_time(fake_sns):
    """While a fetch hangs, another message needing a certificate is told to retry (503) at
    once, without a second connection."""
    from django.test import Client

    to = unique("slot")
    _, message_id = sent_order(to)
    event = delivery_event(message_id, to)
    fake_sns.held.add(_pem(1))
    first: list[int] = []
    hanging = threading.Thread(
        target=lambda: first.append(
            post(Client(), notification(fake_sns, event, cert_url=fake_sns.url(_pem(1))))
        )
    )
    hanging.start()
    wait_for(lambda: fake_sns.requests == [_pem(1)], timeout=10, what="the first fetch")
    assert post(Client(), notification(fake_sns, event, cert_url=fake_sns.url(_pem(2)))) == 503
    assert fake_sns.requests == [_pem(1)]
    hanging.join(10)
    assert first == [503]  # the held fetch timed out: SNS retries
    fake_sns.release.set()
    # The host is remembered as unreachable for a short time: no fetch meanwhile.
    assert post(Client(), notification(fake_sns, event)) == 503
    assert fake_sns.requests == [_pem(1)]


# --- a burst against a real web server ---------------------------------------------------------


def _post_to(server: WebServer, body: dict) -> int:
    request = urllib.request.Request(
        f"{server.url}{URL}",
        method="POST",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "text/plain; charset=UTF-8"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.subprocess
def test_a_burst_of_strangers_costs_no_connection_and_real_events_still_land(
    transactional_db, tmp_path, fake_sns, queues
):
    delivered = [sent_order(unique("burst")) for _ in range(4)]
    bounced_to = unique("bounced")
    bounced, bounced_id = sent_order(bounced_to)
    web = WebServer(
        tmp_path / "web.log",
        {
            "SES_EVENTS_TOPIC_ARNS": TOPIC,
            "SNS_CERT_TRUSTED_DOMAINS": "127.0.0.1",
            "SSL_CERT_FILE": str(fake_sns.ca_file),
            "NO_PROXY": "127.0.0.1,localhost",
            "LOG_FORMAT": "json",
        },
    ).start()
    try:
        first_order, first_id = delivered[0]
        to = first_order.customer_email
        assert _post_to(web, notification(fake_sns, delivery_event(first_id, to))) == 200
        assert fake_sns.requests == [PEM_PATH]  # the real certificate, once
        connections = fake_sns.connections

        # Strangers: another topic (with certificate URLs that would hang if fetched), and
        # our topic with unsigned or wrongly signed messages.
        strangers = []
        for n in range(60):
            fake_sns.held.add(_pem(n))
            event = bounce_event(f"ses-{uuid.uuid4()}", f"victim{n}@example.com")
            cert_url = fake_sns.url(_pem(n))
            strangers.append(
                notification(fake_sns, event, TopicArn=FOREIGN_TOPIC, cert_url=cert_url)
            )
            forged = notification(fake_sns, event)
            strangers.append({**forged, "Signature": forged["Signature"][::-1]})
        real = [
            notification(fake_sns, delivery_event(message_id, order.customer_email))
            for order, message_id in delivered[1:]
        ] + [notification(fake_sns, bounce_event(bounced_id, bounced_to))]
        # The real events go out in the middle of the burst.
        mixed = strangers[:60] + real + strangers[60:]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda body: _post_to(web, body), mixed))
    finally:
        web.stop()

    real_answers = answers[60 : 60 + len(real)]
    assert real_answers == [200] * len(real)
    assert answers[:60] + answers[60 + len(real) :] == [400] * len(strangers)
    assert fake_sns.connections == connections  # the burst made no outbound connection
    assert fake_sns.requests == [PEM_PATH]
    for order, _ in delivered:
        assert OrderEmail.objects.get(order=order).status == EmailStatus.DELIVERED
    assert OrderEmail.objects.get(order=bounced).status == EmailStatus.BOUNCED

    log = web.text()
    assert "suppressed" in log
    _assert_no_address_whole(log, [bounced_to, *(o.customer_email for o, _ in delivered)])
    assert email_addresses_mask(bounced_to) in log


# --- addresses in logs -------------------------------------------------------------------------


#: Anything that looks like an address: a masked one never does (a "*" before its "@").
ADDRESS_LIKE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def _assert_no_address_whole(log: str, addresses: list[str]) -> None:
    for address in addresses:
        assert address.lower() not in log.lower(), f"{address} whole in the log"
    assert ADDRESS_LIKE.findall(log) == []


@pytest.mark.subprocess
@pytest.mark.worker
def test_a_failed_attempt_that_quotes_the_address_is_logged_masked(transactional_db, workers):
    """SES cannot be asked whether the recipient is verified: the reason quotes the address
    (``could not ask SES about ...``), in the task's line and in Celery's own report."""
    from orders import services as orders

    to = unique("quoted")
    ProductFactory(sku="LOG-1", stock=5)
    order = orders.order_place(
        customer_id=to,
        customer_email=to,
        shipping_address=orders.ShippingAddress(
            name="Log Test", line1="1 Main St", city="Town", postal_code="1", country="US"
        ),
        lines=[orders.LineRequest(sku="LOG-1", quantity=1)],
    )
    # SES unreachable (nothing listens there) while the sandbox rule must ask it.
    worker = workers(SES_SANDBOX="true", AWS_ENDPOINT_URL_SES="http://127.0.0.1:9")
    wait_for(lambda: "outcome=failed" in worker.text(), timeout=60, what="a failed attempt")
    wait_for(lambda: "raised" in worker.text(), timeout=30, what="Celery's report")
    worker.stop()
    log = worker.text()
    assert f"could not ask SES about {email_addresses_mask(to)}" in log
    _assert_no_address_whole(log, [to])
    # The database keeps the reason whole (it is personal data there: README).
    assert to in OrderEmail.objects.get(order=order).last_error


@given(
    address=st.emails(),
    before=st.text(st.characters(exclude_categories=("Cs",)), max_size=20),
    after=st.sampled_from(["", " ", ",", ")", "'", '"', "\n", ": failed", ".", ";x"]),
)
@hypothesis_settings(max_examples=500, derandomize=True, database=None, deadline=None)
def test_no_address_survives_the_masking(address, before, after):
    masked = email_addresses_mask(f"{before} <{address}>{after}")
    assert address not in masked
    assert f"{address[0]}***@{address.rpartition('@')[2]}" in masked


def test_the_configured_formatters_mask_addresses():
    """Every handler of the logging configuration masks (plain and JSON)."""
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "suppressed %s", ("bob@example.com",), None
    )
    record.notification = {"mail": {"destination": ["carol@example.com"]}}
    for name in ("plain", "json"):
        formatter_config = dict(settings.LOGGING["formatters"][name])
        factory = formatter_config.pop("()")
        module, _, attribute = factory.rpartition(".")
        formatter = getattr(importlib.import_module(module), attribute)(
            **{("fmt" if k == "format" else k): v for k, v in formatter_config.items()}
        )
        line = formatter.format(record)
        assert "bob@example.com" not in line and "b***@example.com" in line, line
        assert "carol@example.com" not in line, line


# --- anything at all ---------------------------------------------------------------------------

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=20)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=10,
)
EVENTS = st.fixed_dictionaries(
    {},
    optional={
        "eventType": st.sampled_from(["Bounce", "Complaint", "Delivery", "Reject", "Open"])
        | JSON_VALUES,
        "notificationType": JSON_VALUES,
        "mail": st.fixed_dictionaries({}, optional={"messageId": ANY_TEXT | JSON_VALUES}),
        "bounce": JSON_VALUES,
        "delivery": JSON_VALUES,
        "complaint": JSON_VALUES,
        "reject": JSON_VALUES,
    },
)


@given(
    event=EVENTS,
    fields=st.dictionaries(
        st.sampled_from(["Type", "MessageId", "Subject", "Timestamp", "SignatureVersion", "Token"]),
        ANY_TEXT | JSON_VALUES,
        max_size=3,
    ),
    signed=st.booleans(),
)
@hypothesis_settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_any_message_of_our_topic_gets_a_clean_answer(client, fake_sns, event, fields, signed):
    """Signed or not, with any field replaced by any JSON (lone surrogates included)."""
    message = notification(fake_sns, event)
    message.update(fields)
    if signed and isinstance(message.get("Type"), str) and message["Type"] in SIGNED:
        signed_fields = {k: v for k, v in message.items() if isinstance(v, str)}
        message = {**message, **sign(signed_fields, fake_sns.signing_key)}
    assert post(client, json.dumps(message).encode()) in (200, 400, 503)
    assert len(fake_sns.requests) <= 1  # at most the real certificate, once

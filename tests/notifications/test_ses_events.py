"""SES events through SNS: POST /ses/events/ -> django-ses's view and signals -> feedback.

SNS is played by tests/notifications/loopback_sns.py (its docstring says why the emulator's
cannot): messages signed as SNS signs them, its certificate served over HTTPS on loopback.
The emails themselves are really sent through the emulator's SES, so ``ses_message_id`` is
SES's own.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client

from notifications.models import (
    EmailEvent,
    EmailStatus,
    SuppressedAddress,
)
from notifications.sending import confirmation_send
from notifications.services import confirmation_resend
from orders import services as orders
from orders.models import Order
from shop.aws import sns
from tests.factories import ProductFactory, StaffFactory
from tests.notifications.loopback_sns import (
    ADDRESS,
    PEM_PATH,
    TOPIC,
    URL,
    Clock,
    FakeSns,
    bounce_event,
    complaint_notification,
    delivery_event,
    mail,
    notification,
    post,
    record_of,
    reject_event,
    rsa_key,
    sent_order,
    sign,
    unique,
)
from tests.outbox import relay_once
from tests.pipeline import sent_emails


def resent(order: Order) -> str:
    """Resend the order's confirmation (as staff would) and send it: the new SES id."""
    confirmation_resend(order_ids=[order.pk], actor="staff")
    relay_once()
    outcome = confirmation_send(order_id=order.pk)
    assert outcome.outcome == "sent"
    return outcome.ses_message_id


def kinds(order: Order) -> list[str]:
    return list(
        EmailEvent.objects.filter(notification__order=order)
        .order_by("created_at", "id")
        .values_list("kind", flat=True)
    )


# The loopback SNS trusted, emails sent through the emulator's SES (notifications/conftest.py).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fake_sns_trusted")]


# --- the four events ------------------------------------------------------------------------
def test_delivery_marks_the_email_delivered(client, fake_sns):
    to = unique("happy")
    order, message_id = sent_order(to)

    assert post(client, notification(fake_sns, delivery_event(message_id, to))) == 200

    record = record_of(order)
    assert record.status == EmailStatus.DELIVERED
    assert kinds(order) == ["queued", "sent", "delivered"]
    assert "250 2.6.0 Message received" in record.events.last().detail
    assert not SuppressedAddress.objects.filter(email=to).exists()
    assert fake_sns.requests == [PEM_PATH]  # the certificate, fetched once


def test_permanent_bounce_suppresses_the_address_and_the_next_email_is_not_sent(client, fake_sns):
    to = unique("gone")
    order, message_id = sent_order(to)
    # SES reports the address as the recipient's server spelled it.
    event = bounce_event(message_id, to.upper())

    assert post(client, notification(fake_sns, event, version="2")) == 200

    record = record_of(order)
    assert record.status == EmailStatus.BOUNCED
    assert "550 5.1.1 user unknown" in record.last_error
    assert kinds(order) == ["queued", "sent", "bounced"]
    assert "Permanent/General" in record.events.last().detail
    suppression = SuppressedAddress.objects.get(email=to)  # lowercased
    assert suppression.reason == "bounce"
    assert f"order {order.pk}" in suppression.detail

    # The next order to that address: no SES call, status "suppressed".
    before = len(sent_emails(to))
    assert before == 1
    ProductFactory(sku="EVT2", stock=5)
    second = orders.order_place(
        customer_id=to,
        customer_email=to,
        shipping_address=ADDRESS,
        lines=[orders.LineRequest(sku="EVT2", quantity=1)],
    )
    outcome = confirmation_send(order_id=second.pk)
    assert outcome.outcome == "suppressed"
    assert record_of(second).status == EmailStatus.SUPPRESSED
    assert len(sent_emails(to)) == before


def test_a_resend_keeps_every_ses_message_id_and_a_bounce_for_the_first_suppresses(
    client, fake_sns
):
    to = unique("resent")
    order, first = sent_order(to)
    second = resent(order)
    assert second != first
    record = record_of(order)
    assert [m.message_id for m in record.ses_messages.all()] == [second, first]  # latest first
    assert post(client, notification(fake_sns, delivery_event(second, to))) == 200
    assert record_of(order).status == EmailStatus.DELIVERED

    # SES's late report about the first send: the address is gone.
    assert post(client, notification(fake_sns, bounce_event(first, to))) == 200

    assert SuppressedAddress.objects.get(email=to).reason == "bounce"
    record = record_of(order)
    assert record.status == EmailStatus.DELIVERED  # the newer send's status, untouched
    assert "bounced" not in record.last_error
    assert kinds(order) == [
        *["queued", "sent", "resend", "queued", "sent", "delivered", "bounced"],
    ]
    assert f"earlier send {first}" in record.events.last().detail


def test_an_event_for_an_earlier_send_never_changes_the_newer_sends_status(client, fake_sns):
    to = unique("older")
    order, first = sent_order(to)
    second = resent(order)
    assert post(client, notification(fake_sns, bounce_event(second, to))) == 200
    assert record_of(order).status == EmailStatus.BOUNCED

    # The first send was delivered (or rejected, or complained about) after all.
    for event in (delivery_event(first, to), reject_event(first, to)):
        assert post(client, notification(fake_sns, event)) == 200

    record = record_of(order)
    assert record.status == EmailStatus.BOUNCED
    assert "550 5.1.1 user unknown" in record.last_error
    assert kinds(order)[-3:] == ["bounced", "delivered", "rejected"]


def test_a_delivery_arriving_after_the_bounce_does_not_undo_it(client, fake_sns):
    to = unique("late")
    order, message_id = sent_order(to)
    assert post(client, notification(fake_sns, bounce_event(message_id, to))) == 200
    assert post(client, notification(fake_sns, delivery_event(message_id, to))) == 200

    assert record_of(order).status == EmailStatus.BOUNCED
    assert kinds(order) == ["queued", "sent", "bounced", "delivered"]  # still in the history


def test_complaint_marks_complained_and_suppresses(client, fake_sns):
    to = unique("angry")
    order, message_id = sent_order(to)
    assert post(client, notification(fake_sns, delivery_event(message_id, to))) == 200

    assert post(client, notification(fake_sns, complaint_notification(message_id, to))) == 200

    assert record_of(order).status == EmailStatus.COMPLAINED
    assert kinds(order) == ["queued", "sent", "delivered", "complained"]
    assert "feedback type abuse" in record_of(order).events.last().detail
    assert SuppressedAddress.objects.get(email=to).reason == "complaint"


def test_reject_marks_the_email_failed(client, fake_sns):
    to = unique("virus")
    order, message_id = sent_order(to)

    assert post(client, notification(fake_sns, reject_event(message_id, to), version="2")) == 200

    record = record_of(order)
    assert record.status == EmailStatus.FAILED
    assert record.last_error == "SES rejected the email: Bad content"
    assert kinds(order) == ["queued", "sent", "rejected"]
    assert not SuppressedAddress.objects.exists()


def test_transient_bounce_suppresses_nobody(client, fake_sns):
    to = unique("full")
    order, message_id = sent_order(to)

    event = bounce_event(message_id, to, permanent=False)
    assert post(client, notification(fake_sns, event)) == 200

    assert record_of(order).status == EmailStatus.BOUNCED
    assert "Transient/MailboxFull" in record_of(order).events.last().detail
    assert not SuppressedAddress.objects.filter(email=to).exists()

    # ...and the address still gets mail.
    ProductFactory(sku="EVT3", stock=5)
    again = orders.order_place(
        customer_id=to,
        customer_email=to,
        shipping_address=ADDRESS,
        lines=[orders.LineRequest(sku="EVT3", quantity=1)],
    )
    assert confirmation_send(order_id=again.pk).outcome == "sent"


def test_transient_bounce_after_a_delivery_is_history_only(client, fake_sns):
    to = unique("ooo")
    order, message_id = sent_order(to)
    assert post(client, notification(fake_sns, delivery_event(message_id, to))) == 200

    event = bounce_event(message_id, to, permanent=False)
    assert post(client, notification(fake_sns, event)) == 200

    assert record_of(order).status == EmailStatus.DELIVERED
    assert kinds(order) == ["queued", "sent", "delivered", "bounced"]


def test_the_same_sns_message_twice_has_one_effect(client, fake_sns):
    to = unique("twice")
    order, message_id = sent_order(to)
    message = notification(fake_sns, bounce_event(message_id, to))

    assert post(client, message) == 200
    assert post(client, message) == 200

    assert kinds(order) == ["queued", "sent", "bounced"]
    assert SuppressedAddress.objects.filter(email=to).count() == 1

    # Another SNS message about the same bounce (SES sends at least once, too) is no crash.
    assert post(client, notification(fake_sns, bounce_event(message_id, to))) == 200
    assert SuppressedAddress.objects.filter(email=to).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_deliveries_have_one_effect(fake_sns, queues):
    """SNS may deliver one message to two web processes at once: the row lock decides."""
    to = unique("race")
    order, message_id = sent_order(to)
    message = notification(fake_sns, bounce_event(message_id, to))
    # Two processes would each fetch the certificate; these threads share one process's
    # cache (one fetch at a time: the others would be told to retry), so it is warmed first.
    assert sns.signing_certificate(fake_sns.url(PEM_PATH)) is not None
    barrier = threading.Barrier(4)
    codes: list[int] = []

    def deliver() -> None:
        barrier.wait()
        try:
            codes.append(post(Client(), message))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert codes == [200] * 4
    # (Committed for real here, so the order's publish to the queue is in the history too.)
    assert kinds(order) == ["queued", "sent", "bounced"]
    assert SuppressedAddress.objects.filter(email=to).count() == 1


def test_unknown_message_id_is_ignored_with_a_log_line(client, fake_sns, caplog):
    to = unique("known")
    order, _ = sent_order(to)
    caplog.set_level(logging.INFO, logger="notifications.feedback")

    event = bounce_event("0100018f-not-ours-000000", to)
    assert post(client, notification(fake_sns, event)) == 200

    assert record_of(order).status == EmailStatus.SENT
    assert kinds(order) == ["queued", "sent"]
    assert not SuppressedAddress.objects.exists()
    assert "unknown message id 0100018f-not-ours-000000" in caplog.text


def test_event_types_we_do_not_use_are_accepted_and_ignored(client, fake_sns):
    to = unique("open")
    order, message_id = sent_order(to)
    event = {"eventType": "Open", "mail": mail(message_id, to), "open": {"ipAddress": "192.0.2.1"}}

    assert post(client, notification(fake_sns, event)) == 200

    assert kinds(order) == ["queued", "sent"]


# --- signatures, certificates, topics --------------------------------------------------------
def test_a_tampered_message_is_refused_and_changes_nothing(client, fake_sns):
    to = unique("tamper")
    order, message_id = sent_order(to)
    genuine = notification(fake_sns, delivery_event(message_id, to))
    forged = {**genuine, "Message": json.dumps(bounce_event(message_id, to))}

    assert post(client, forged) == 400

    assert record_of(order).status == EmailStatus.SENT
    assert kinds(order) == ["queued", "sent"]
    assert not SuppressedAddress.objects.exists()


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_message_signed_with_another_key_is_refused(client, fake_sns, version):
    to = unique("otherkey")
    order, message_id = sent_order(to)
    forged = notification(fake_sns, bounce_event(message_id, to), version=version, key=rsa_key())

    assert post(client, forged) == 400
    assert record_of(order).status == EmailStatus.SENT


def test_signature_version_must_match_the_hash(client, fake_sns):
    to = unique("version")
    order, message_id = sent_order(to)
    message = notification(fake_sns, bounce_event(message_id, to), version="1")

    assert post(client, {**message, "SignatureVersion": "2"}) == 400
    assert post(client, {**message, "SignatureVersion": "3"}) == 400
    assert record_of(order).status == EmailStatus.SENT


@pytest.mark.parametrize(
    "cert_url",
    [
        "https://localhost:{port}" + PEM_PATH,  # same server, host not trusted
        "http://127.0.0.1:{port}" + PEM_PATH,  # not https
        "https://127.0.0.1:{port}/certificate.txt",  # not a .pem
        "https://evil.example@127.0.0.1:{port}" + PEM_PATH,  # user info
        "https://sns.us-east-1.amazonaws.com.evil.example" + PEM_PATH,
        "https://127.0.0.1:{port}/SimpleNotificationService-notahexname.pem",
        "https://127.0.0.1:{port}/x/SimpleNotificationService-0123abcd.pem",  # another path
        "https://127.0.0.1:{port}" + PEM_PATH + "?then=elsewhere",  # a query
        "https://127.0.0.1:{port}" + PEM_PATH + "#fragment",
        "https://sns.us-east-1.amazonaws.com:8443" + PEM_PATH,  # AWS's host, another port
        "https://sns.eu-west-1.amazonaws.com" + PEM_PATH,  # another region's SNS
    ],
)
def test_a_certificate_from_an_untrusted_url_is_never_fetched(client, fake_sns, cert_url):
    to = unique("untrusted")
    order, message_id = sent_order(to)
    url = cert_url.format(port=fake_sns.port)

    assert post(client, notification(fake_sns, bounce_event(message_id, to), cert_url=url)) == 400

    assert fake_sns.requests == []
    assert record_of(order).status == EmailStatus.SENT


def test_a_certificate_url_without_a_certificate_is_refused_and_remembered(client, fake_sns):
    to = unique("nocert")
    order, message_id = sent_order(to)
    missing = fake_sns.url("/SimpleNotificationService-0000deadbeef.pem")  # 404

    for _ in range(3):
        message = notification(fake_sns, bounce_event(message_id, to), cert_url=missing)
        assert post(client, message) == 400
    assert record_of(order).status == EmailStatus.SENT
    assert fake_sns.requests == ["/SimpleNotificationService-0000deadbeef.pem"]  # asked once


def test_a_certificate_that_cannot_be_fetched_now_asks_sns_to_retry(client, fake_sns, monkeypatch):
    to = unique("retry")
    order, message_id = sent_order(to)
    fake_sns.routes[PEM_PATH] = (503, b"")
    message = notification(fake_sns, bounce_event(message_id, to))
    clock = Clock(monkeypatch)

    assert post(client, message) == 503
    assert record_of(order).status == EmailStatus.SENT
    assert fake_sns.requests == [PEM_PATH]

    del fake_sns.routes[PEM_PATH]  # the certificate is back, but the failure is remembered:
    assert post(client, message) == 503  # SNS's early retries cost no fetch
    assert fake_sns.requests == [PEM_PATH]
    clock.advance(sns.CERT_UNAVAILABLE_TTL + 1)  # a short time, not for good
    assert post(client, message) == 200
    assert record_of(order).status == EmailStatus.BOUNCED
    assert fake_sns.requests == [PEM_PATH, PEM_PATH]


def test_a_message_from_another_topic_is_refused(client, fake_sns):
    to = unique("topic")
    order, message_id = sent_order(to)
    other = "arn:aws:sns:us-east-1:999999999999:someone-elses-topic"

    assert post(client, notification(fake_sns, bounce_event(message_id, to), TopicArn=other)) == 400
    assert record_of(order).status == EmailStatus.SENT


def test_no_topic_configured_accepts_nothing(client, fake_sns, settings):
    settings.AWS_SNS_EVENT_TRUSTED_TOPIC_ARNS = []
    to = unique("notopic")
    order, message_id = sent_order(to)

    assert post(client, notification(fake_sns, bounce_event(message_id, to))) == 400
    assert record_of(order).status == EmailStatus.SENT


# --- junk -----------------------------------------------------------------------------------
def _envelope(**fields) -> dict:
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Message": "{}",
        "Timestamp": "2024-05-01T10:00:00.000Z",
        "SignatureVersion": "1",
        "Signature": "AAAA",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com" + PEM_PATH,
        **fields,
    }


_BOUNCE = {"eventType": "Bounce", "mail": {"messageId": "x"}, "bounce": {}}
JUNK = [
    b"",
    b"not json",
    b"\xff\xfe\x00junk",
    b"[]",
    b"1",
    b'"Notification"',
    b"null",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"Type": "Notification"}',
    json.dumps(_envelope(Type="Surprise")).encode(),
    json.dumps(_envelope(Type=["Notification"])).encode(),
    json.dumps(_envelope(MessageId=None)).encode(),
    json.dumps(_envelope(MessageId="")).encode(),
    json.dumps(_envelope(MessageId="x\ny")).encode(),
    json.dumps(_envelope(Message={"eventType": "Bounce"})).encode(),
    json.dumps(_envelope(Message="[]")).encode(),
    json.dumps(_envelope(Message="not json")).encode(),
    json.dumps(_envelope(Message='{"eventType": "Bounce"}')).encode(),
    json.dumps(_envelope(Message=json.dumps({**_BOUNCE, "mail": {"messageId": 7}}))).encode(),
    json.dumps(_envelope(Message=json.dumps({**_BOUNCE, "bounce": []}))).encode(),
    json.dumps(_envelope(Message='{"eventType": 5}')).encode(),
    json.dumps(_envelope(Subject=5)).encode(),
    json.dumps(_envelope(SigningCertURL=None)).encode(),
    json.dumps(_envelope(Type="SubscriptionConfirmation")).encode(),  # no SubscribeURL, Token
]


@pytest.mark.parametrize("body", JUNK, ids=range(len(JUNK)))
def test_junk_is_a_400_never_a_500(client, fake_sns, body):
    assert post(client, body) == 400
    assert fake_sns.requests == []  # refused before any certificate fetch


def test_signed_junk_inside_a_valid_envelope_is_a_400(client, fake_sns):
    message = notification(fake_sns, {"eventType": "Delivery", "mail": "x", "delivery": {}})
    assert post(client, message) == 400


def test_signed_but_odd_event_fields_do_not_break_anything(client, fake_sns):
    to = unique("odd")
    order, message_id = sent_order(to)
    event = bounce_event(message_id, to)
    event["bounce"]["bouncedRecipients"] = [
        "not an object",
        {"emailAddress": 42},
        {"emailAddress": "not an address"},
        {"emailAddress": to, "status": None, "diagnosticCode": ["x"]},
    ]
    event["bounce"]["bounceSubType"] = {"nested": True}

    assert post(client, notification(fake_sns, event)) == 200

    assert record_of(order).status == EmailStatus.BOUNCED
    assert list(SuppressedAddress.objects.values_list("email", flat=True)) == [to]


def test_only_post_and_no_csrf_token_needed(fake_sns):
    strict = Client(enforce_csrf_checks=True)
    assert strict.get(URL).status_code == 405
    assert post(strict, b"[]") == 400  # reached the view: not a 403 from the CSRF check


# --- subscription confirmation ---------------------------------------------------------------
def subscription(sns: FakeSns, subscribe_url: str, **fields) -> dict:
    message = {
        "Type": "SubscriptionConfirmation",
        "MessageId": str(uuid.uuid4()),
        "Token": "2336412f37fb687f5d51e6e2425dacbba",
        "TopicArn": TOPIC,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
        "SubscribeURL": subscribe_url,
        "Timestamp": "2024-05-01T10:00:00.000Z",
        "SigningCertURL": sns.url(PEM_PATH),
        **fields,
    }
    return sign(message, sns.signing_key, "2")


def test_a_verified_subscription_is_confirmed(client, fake_sns):
    fake_sns.routes["/confirm"] = (200, b"<ConfirmSubscriptionResponse/>")
    url = fake_sns.url("/confirm?Action=ConfirmSubscription&Token=2336412f")

    assert post(client, subscription(fake_sns, url)) == 200

    assert fake_sns.requests == [PEM_PATH, "/confirm?Action=ConfirmSubscription&Token=2336412f"]


def test_an_unverified_subscription_is_not_confirmed(client, fake_sns):
    url = fake_sns.url("/confirm?Action=ConfirmSubscription&Token=forged")
    forged = {**subscription(fake_sns, url), "Token": "another"}

    assert post(client, forged) == 400

    assert "/confirm" not in " ".join(fake_sns.requests)


def test_a_subscription_url_on_an_untrusted_host_is_not_fetched(client, fake_sns):
    url = fake_sns.url("/confirm?Action=ConfirmSubscription", host="localhost")

    assert post(client, subscription(fake_sns, url)) == 200  # verified, just not confirmed

    assert fake_sns.requests == [PEM_PATH]


def test_a_subscription_from_another_topic_is_not_confirmed(client, fake_sns):
    url = fake_sns.url("/confirm?Action=ConfirmSubscription")
    other = "arn:aws:sns:us-east-1:999999999999:someone-elses-topic"

    assert post(client, subscription(fake_sns, url, TopicArn=other)) == 400

    assert "/confirm" not in " ".join(fake_sns.requests)


# --- sending with the configuration set ------------------------------------------------------
def test_the_configuration_set_is_named_on_every_email(settings):
    settings.AWS_SES_CONFIGURATION_SET = "shop-events"
    to = unique("configset")
    sent_order(to)

    [email] = sent_emails(to)
    assert "X-SES-CONFIGURATION-SET: shop-events" in email["raw_data"]


# --- the suppression list in the admin -------------------------------------------------------
def staff(*codenames: str) -> Client:
    user = StaffFactory(password="x")
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="notifications", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


def test_staff_add_and_remove_suppressed_addresses(fake_sns):
    client = staff("view_suppressedaddress", "add_suppressedaddress", "delete_suppressedaddress")
    add = "/admin/notifications/suppressedaddress/add/"

    response = client.post(add, {"email": " Typo@Example.COM ", "reason": "bounce", "detail": ""})
    assert response.status_code == 302
    suppression = SuppressedAddress.objects.get()
    assert suppression.email == "typo@example.com"
    assert "added by staff-" in suppression.detail

    again = client.post(add, {"email": "TYPO@example.com", "reason": "complaint", "detail": ""})
    assert again.status_code == 200  # the form says it exists
    assert SuppressedAddress.objects.count() == 1

    listing = client.get("/admin/notifications/suppressedaddress/?q=typo")
    assert b"typo@example.com" in listing.content

    delete = f"/admin/notifications/suppressedaddress/{suppression.pk}/delete/"
    assert client.post(delete, {"post": "yes"}).status_code == 302
    assert not SuppressedAddress.objects.exists()


def test_the_suppression_list_needs_its_permissions(fake_sns):
    SuppressedAddress.objects.create(email="kept@example.com", reason="bounce")
    viewer = staff("view_suppressedaddress")
    assert viewer.get("/admin/notifications/suppressedaddress/").status_code == 200
    assert viewer.get("/admin/notifications/suppressedaddress/add/").status_code == 403
    pk = SuppressedAddress.objects.get().pk
    delete = f"/admin/notifications/suppressedaddress/{pk}/delete/"
    assert viewer.post(delete, {"post": "yes"}).status_code == 403
    nobody = staff()
    assert nobody.get("/admin/notifications/suppressedaddress/").status_code == 403
    assert SuppressedAddress.objects.filter(email="kept@example.com").exists()

"""SES events through SNS: POST /ses/events/ -> django-ses's view and signals -> feedback.

The emulator's SNS cannot play this part: it signs with a throwaway key (always
SignatureVersion 2) and names a SigningCertURL on AWS's real host, and its SES publishes no
configuration-set events (only canned identity notifications with a fixed message id). So
these tests are SNS themselves: an RSA key and certificate made here, served over HTTPS by a
loopback server (its own test CA, trusted through SSL_CERT_FILE), and messages signed
exactly as SNS signs them (SignatureVersion 1 = SHA1, 2 = SHA256). The emails themselves are
really sent through the emulator's SES, so ``ses_message_id`` is SES's own.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import ipaddress
import json
import logging
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client

from notifications import ses, sns
from notifications.models import (
    EmailEvent,
    EmailStatus,
    OrderEmail,
    SuppressedAddress,
)
from notifications.services import confirmation_resend, confirmation_send
from orders import services as orders
from orders.models import Order, Product
from tests.conftest import make_product
from tests.outbox import relay_once
from tests.pipeline import sent_emails

TOPIC = "arn:aws:sns:us-east-1:123456789012:shop-ses-events"
URL = "/ses/events/"
PEM_PATH = "/SimpleNotificationService-0123456789abcdef.pem"


# --- a loopback "SNS": TLS, a signing certificate, confirmation URLs ------------------------
def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert(subject: str, key, *, issuer=None, issuer_key=None, ca=False, ip=None):
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class FakeSns:
    """The HTTPS side of SNS on 127.0.0.1: the signing certificate and SubscribeURLs."""

    signing_key: rsa.RSAPrivateKey
    signing_pem: bytes
    ca_file: Path
    port: int = 0
    #: Paths GET-requested so far.
    requests: list[str] = field(default_factory=list)
    #: path -> (status, body) for anything beyond the certificate.
    routes: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    #: Connections accepted so far (TLS handshakes included, requests or not).
    connections: int = 0
    #: Paths whose answer waits until ``release`` is set (at most 10 s): a hanging server.
    held: set[str] = field(default_factory=set)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"


@pytest.fixture(scope="module")
def fake_sns(tmp_path_factory):
    ca_key, server_key, signing_key = _key(), _key(), _key()
    ca = _cert("shop test CA", ca_key, ca=True)
    server = _cert("127.0.0.1", server_key, issuer=ca, issuer_key=ca_key, ip="127.0.0.1")
    folder = tmp_path_factory.mktemp("fake-sns")
    (folder / "ca.pem").write_bytes(_pem(ca))
    (folder / "server.pem").write_bytes(_pem(server))
    (folder / "server.key").write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    sns = FakeSns(signing_key, _pem(_cert("sns.amazonaws.com", signing_key)), folder / "ca.pem")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            sns.requests.append(self.path)
            if self.path in sns.held:
                sns.release.wait(10)
            status, body = (200, sns.signing_pem) if self.path == PEM_PATH else (404, b"")
            status, body = sns.routes.get(self.path.split("?")[0], (status, body))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def verify_request(self, request, client_address) -> bool:
            sns.connections += 1
            return True

    httpd = Server(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem", folder / "server.key")
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    sns.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield sns
    sns.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _setup(fake_sns, settings, monkeypatch):
    """Trust the loopback SNS (its host, its CA, our topic); send through the emulator's SES."""
    settings.SNS_CERT_TRUSTED_DOMAINS = ["127.0.0.1"]
    settings.AWS_SNS_EVENT_TRUSTED_TOPIC_ARNS = [TOPIC]
    monkeypatch.setenv("SSL_CERT_FILE", str(fake_sns.ca_file))  # OpenSSL's default CA file
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # pytest-django swaps in locmem: these tests send through SES for real.
    settings.EMAIL_BACKEND = "django_ses.SESBackend"
    settings.SES_SANDBOX = "false"  # any recipient (the emulator has no sandbox rule)
    ses.cache_clear()  # a backend built with these settings
    sns.certificate_cache_clear()
    fake_sns.requests.clear()
    fake_sns.routes.clear()
    fake_sns.held.clear()
    fake_sns.release.clear()
    fake_sns.connections = 0
    yield
    fake_sns.release.set()
    sns.certificate_cache_clear()
    ses.cache_clear()


# --- SNS messages, signed as SNS signs them ---------------------------------------------------
_SIGNED = {
    "Notification": ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
    "SubscriptionConfirmation": [
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ],
}  # fmt: skip


def sign(message: dict, key, version: str = "1") -> dict:
    """Sign like SNS: ``name\\nvalue\\n`` for each signed field present, in order."""
    text = "".join(f"{n}\n{message[n]}\n" for n in _SIGNED[message["Type"]] if n in message)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(text.encode(), padding.PKCS1v15(), algorithm)
    return {
        **message,
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode(),
    }


def notification(
    sns: FakeSns, event: dict, *, version: str = "1", key=None, cert_url=None, **fields
) -> dict:
    message = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": TOPIC,
        "Message": json.dumps(event),
        "Timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z",
        "SigningCertURL": cert_url or sns.url(PEM_PATH),
        "UnsubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&x={uuid.uuid4()}",
        **fields,
    }
    return sign(message, key or sns.signing_key, version)


def mail(message_id: str, to: str) -> dict:
    """SES's ``mail`` object (AWS docs, event publishing examples)."""
    return {
        "timestamp": "2024-05-01T10:00:00.000Z",
        "source": "shop@example.com",
        "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/shop@example.com",
        "sendingAccountId": "123456789012",
        "messageId": message_id,
        "destination": [to],
        "headersTruncated": False,
        "headers": [{"name": "To", "value": to}],
        "commonHeaders": {"from": ["shop@example.com"], "to": [to], "subject": "Your order"},
        "tags": {"ses:configuration-set": ["shop-events"]},
    }


def bounce_event(message_id: str, to: str, *, permanent: bool = True) -> dict:
    status, diagnostic = (
        ("5.1.1", "550 5.1.1 user unknown") if permanent else ("4.2.2", "452 4.2.2 mailbox full")
    )
    recipient = {
        "emailAddress": to,
        "action": "failed",
        "status": status,
        "diagnosticCode": f"smtp; {diagnostic}",
    }
    return {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": "Permanent" if permanent else "Transient",
            "bounceSubType": "General" if permanent else "MailboxFull",
            "bouncedRecipients": [recipient],
            "timestamp": "2024-05-01T10:00:02.669Z",
            "feedbackId": f"0100{uuid.uuid4().hex}-000000",
            "reportingMTA": "dsn; mta.example.com",
        },
        "mail": mail(message_id, to),
    }


def complaint_notification(message_id: str, to: str) -> dict:
    """The older identity-notification form: ``notificationType`` instead of ``eventType``."""
    return {
        "notificationType": "Complaint",
        "complaint": {
            "userAgent": "ExampleCorp Feedback Loop (V0.01)",
            "complainedRecipients": [{"emailAddress": to}],
            "complaintFeedbackType": "abuse",
            "arrivalDate": "2024-05-01T10:01:00.000Z",
            "timestamp": "2024-05-01T10:01:01.000Z",
            "feedbackId": f"0100{uuid.uuid4().hex}-000000",
        },
        "mail": mail(message_id, to),
    }


def delivery_event(message_id: str, to: str) -> dict:
    return {
        "eventType": "Delivery",
        "mail": mail(message_id, to),
        "delivery": {
            "timestamp": "2024-05-01T10:00:01.184Z",
            "processingTimeMillis": 546,
            "recipients": [to],
            "smtpResponse": "250 2.6.0 Message received",
            "reportingMTA": "a8-70.smtp-out.amazonses.com",
        },
    }


def reject_event(message_id: str, to: str) -> dict:
    return {
        "eventType": "Reject",
        "mail": mail(message_id, to),
        "reject": {"reason": "Bad content"},
    }


def post(client: Client, body) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body)
    # SNS's own content type for HTTP/S deliveries.
    return client.post(URL, data=data, content_type="text/plain; charset=utf-8").status_code


# --- orders whose email really went through the emulator's SES --------------------------------
ADDRESS = orders.ShippingAddress(
    name="Event Test", line1="1 Main St", city="Town", postal_code="1", country="US"
)


def sent_order(email: str) -> tuple[Order, str]:
    """An order whose confirmation SES accepted; returns it and SES's message id."""
    if not Product.objects.filter(sku="EVT").exists():
        make_product(sku="EVT", stock=1000)
    order = orders.order_place(
        customer_id=email,
        customer_email=email,
        shipping_address=ADDRESS,
        lines=[orders.LineRequest(sku="EVT", quantity=1)],
    )
    relay_once()  # its task on the queue, as the relay publishes it ("queued")
    outcome = confirmation_send(order_id=order.pk)
    assert outcome.outcome == "sent" and outcome.ses_message_id
    record = OrderEmail.objects.get(order=order)
    assert record.status == EmailStatus.SENT
    assert [m.message_id for m in record.ses_messages.all()] == [outcome.ses_message_id]
    return order, outcome.ses_message_id


def resent(order: Order) -> str:
    """Resend the order's confirmation (as staff would) and send it: the new SES id."""
    confirmation_resend(order_ids=[order.pk], actor="staff")
    relay_once()
    outcome = confirmation_send(order_id=order.pk)
    assert outcome.outcome == "sent"
    return outcome.ses_message_id


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}@example.com"


def record_of(order: Order) -> OrderEmail:
    return OrderEmail.objects.get(order=order)


def kinds(order: Order) -> list[str]:
    return list(
        EmailEvent.objects.filter(notification__order=order)
        .order_by("created_at", "id")
        .values_list("kind", flat=True)
    )


pytestmark = pytest.mark.django_db


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
    make_product(sku="EVT2", stock=5)
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
    make_product(sku="EVT3", stock=5)
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
    forged = notification(fake_sns, bounce_event(message_id, to), version=version, key=_key())

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
    clock = _Clock(monkeypatch)

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


class _Clock:
    """``notifications.sns``'s clock, moved by the test (only that module's)."""

    def __init__(self, monkeypatch) -> None:
        import time as real_time

        self.offset = 0.0
        clock = self

        class Time:
            @staticmethod
            def monotonic() -> float:
                return real_time.monotonic() + clock.offset

        monkeypatch.setattr(sns, "time", Time)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


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
    user = User.objects.create_user(f"staff-{uuid.uuid4().hex[:6]}", password="x", is_staff=True)
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

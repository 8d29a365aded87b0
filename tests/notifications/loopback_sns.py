"""A loopback SNS for the SES events webhook's tests (tests/notifications/test_ses_events.py,
test_ses_webhook_limits.py; the fixtures ``fake_sns`` and ``fake_sns_trusted`` are in
tests/notifications/conftest.py).

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
import contextlib
import datetime as dt
import http.server
import ipaddress
import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from django.test import Client

from notifications.models import EmailStatus, OrderEmail
from notifications.sending import confirmation_send
from orders import services as orders
from orders.models import Order, Product
from shop.aws import sns
from tests.factories import ProductFactory
from tests.outbox import relay_once

TOPIC = "arn:aws:sns:us-east-1:123456789012:shop-ses-events"
URL = "/ses/events/"
PEM_PATH = "/SimpleNotificationService-0123456789abcdef.pem"


# --- a loopback "SNS": TLS, a signing certificate, confirmation URLs ------------------------
def rsa_key() -> rsa.RSAPrivateKey:
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


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[FakeSns]:
    """Make the keys and certificates (under ``folder``) and serve them over HTTPS on
    127.0.0.1 until the block ends."""
    ca_key, server_key, signing_key = rsa_key(), rsa_key(), rsa_key()
    ca = _cert("shop test CA", ca_key, ca=True)
    server = _cert("127.0.0.1", server_key, issuer=ca, issuer_key=ca_key, ip="127.0.0.1")
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
    try:
        yield sns
    finally:
        sns.release.set()
        httpd.shutdown()
        httpd.server_close()


# --- SNS messages, signed as SNS signs them ---------------------------------------------------
SIGNED = {
    "Notification": ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
    "SubscriptionConfirmation": [
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ],
}  # fmt: skip


def sign(message: dict, key, version: str = "1") -> dict:
    """Sign like SNS: ``name\\nvalue\\n`` for each signed field present, in order."""
    text = "".join(f"{n}\n{message[n]}\n" for n in SIGNED[message["Type"]] if n in message)
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
        ProductFactory(sku="EVT", stock=1000)
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


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}@example.com"


def record_of(order: Order) -> OrderEmail:
    return OrderEmail.objects.get(order=order)


class Clock:
    """``shop.aws.sns``'s clock, moved by the test (only that module's)."""

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

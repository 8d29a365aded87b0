"""SES events in: the SNS webhook ``POST /ses/events/`` and the signal receivers behind it.

SES publishes each email's events to the configuration set's SNS topic; SNS POSTs them here.
The view is django-ses's ``SESEventWebhookView`` (CSRF-exempt, POST only), which checks the
topic, dispatches on ``eventType``/``notificationType`` and sends its signals; the receivers
at the bottom hand each event to ``notifications.feedback``. What this module changes:

- Junk and strangers never reach django-ses's parsing (which raises on a JSON array, a
  missing ``Message`` or a non-object ``Message``), nor cost a fetch: the SNS envelope, the
  topic (``AWS_SNS_EVENT_TRUSTED_TOPIC_ARNS`` must name it; django-ses accepts any topic when
  it is empty, here nothing is accepted then: a valid signature only proves that *some* AWS
  topic sent it), the exact shape of ``SigningCertURL`` and, for the four events we use,
  ``mail.messageId`` and the event object are checked first; anything else is a 400. Only
  then may the signature check fetch a certificate (``shop.aws.sns``: bounded, rare).
- Signatures: django-ses 4.8.2 verifies SignatureVersion 1 (SHA1) only and fetches
  certificates without a bound; ``shop.aws.sns`` verifies both versions, and a
  certificate that cannot be had *now* answers 503, so that SNS retries.
- ``Reject`` events: django-ses has no signal for them (it logs "unknown event"); this module
  sends ``reject_received`` with the same arguments as its other signals.
- SubscriptionConfirmation: django-ses GETs the SubscribeURL with ``urlopen`` and no timeout,
  only for hosts ``sns.<region>.amazonaws.com``. Here it is fetched only for a message whose
  signature was verified (never with verification off), from a trusted host, bounded.
- Logs: django-ses logs whole payloads (with recipients' addresses) in its INFO lines and in
  its "unknown event" warning; its logger is at WARNING (settings) and the unknown-event and
  unknown-type handlers are this module's, one line without the payload.

Status codes: 200 handled (or ignored with a log line: an unknown message id, an event type
we do not use); 400 junk, bad signature, untrusted certificate URL or topic; 503 the
signing certificate cannot be had now. SNS retries 5xx answers, not 4xx ones.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.dispatch import Signal
from django.http import HttpResponse, HttpResponseBadRequest
from django_ses import signals
from django_ses.conf import settings as ses_settings
from django_ses.views import SESEventWebhookView

from notifications import feedback
from shop.aws import sns
from shop.aws.fetch import FetchFailed

logger = logging.getLogger(__name__)

#: django-ses has no signal for SES's Reject event; sent with mail_obj, reject_obj, raw_message.
reject_received = Signal()

# --- the view -------------------------------------------------------------------------------
_ENVELOPE_FIELDS = (
    *("Type", "MessageId", "TopicArn", "Message", "Timestamp"),
    *("SignatureVersion", "Signature", "SigningCertURL"),
)
#: The events we act on, and the key of their event object in SES's message.
EVENT_OBJECTS = {
    "Bounce": "bounce",
    "Complaint": "complaint",
    "Delivery": "delivery",
    "Reject": "reject",
}


def _text_problem(value: Any) -> bool:
    """Whether decoded JSON holds a lone surrogate (valid JSON, not valid text)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def envelope_problem(body: bytes) -> str | None:
    """Why the body is not an SNS message of ours we can hand to django-ses; None if it is.

    Everything here is checked in memory: a message refused here cost no outbound call.
    """
    try:
        message = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return "not JSON"
    if not isinstance(message, dict):
        return "not a JSON object"
    if not isinstance(message.get("Type"), str) or message["Type"] not in sns.SIGNED_FIELDS:
        return "no known Type"
    required = {*_ENVELOPE_FIELDS, *sns.SIGNED_FIELDS[message["Type"]]} - {"Subject"}
    missing = sorted(name for name in required if not isinstance(message.get(name), str))
    if missing:
        return f"missing or not strings: {', '.join(missing)}"
    if "Subject" in message and not isinstance(message["Subject"], str):
        return "Subject not a string"
    if _text_problem(message):
        return "not valid text"
    sns_id = message["MessageId"]
    if not sns_id or len(sns_id) > 100 or not sns_id.isprintable():
        return "bad MessageId"
    if message["TopicArn"] not in settings.AWS_SNS_EVENT_TRUSTED_TOPIC_ARNS:
        return "not from a trusted topic"
    if message["SignatureVersion"] not in sns.SIGNATURE_HASHES:
        return "unknown SignatureVersion"
    if problem := sns.cert_url_problem(message["SigningCertURL"]):
        return problem
    if message["Type"] != "Notification":
        return None
    try:
        event = json.loads(message["Message"])
    except (ValueError, RecursionError):
        return "Message not JSON"
    if not isinstance(event, dict):
        return "Message not a JSON object"
    if _text_problem(event):
        return "Message not valid text"
    event_type = event.get("eventType", event.get("notificationType"))
    if not isinstance(event_type, str):
        return "no eventType or notificationType"
    if event_type in EVENT_OBJECTS:
        mail = event.get("mail")
        if not isinstance(mail, dict) or not isinstance(mail.get("messageId"), str):
            return "no mail.messageId"
        if not isinstance(event.get(EVENT_OBJECTS[event_type]), dict):
            return f"no {EVENT_OBJECTS[event_type]} object"
    return None


class SesEventView(SESEventWebhookView):
    """django-ses's webhook with checked input, both signature versions and Reject events."""

    def post(self, request, *args, **kwargs):
        problem = envelope_problem(request.body)
        if problem:
            logger.warning("SES event refused: %s", problem)
            return HttpResponseBadRequest(f"Not an SNS message: {problem}.")
        try:
            return super().post(request, *args, **kwargs)
        except sns.CertificateUnavailable as exc:
            logger.warning("SES event not verified yet, SNS will retry: %s", exc)
            return HttpResponse("Signing certificate unavailable.", status=503)

    def verify_event_message(self, notification: dict[str, Any]) -> bool:
        return sns.sns_signature_valid(notification)

    def verify_event_topic(self, notification: dict[str, Any]) -> bool:
        return notification.get("TopicArn") in settings.AWS_SNS_EVENT_TRUSTED_TOPIC_ARNS

    def handle_subscription_confirmation(self, notification: dict[str, Any]) -> None:
        topic, url = notification.get("TopicArn"), notification.get("SubscribeURL")
        if not ses_settings.VERIFY_EVENT_SIGNATURES:
            logger.warning("subscription to %s NOT confirmed: signatures are not verified", topic)
            return
        if not sns.trusted_sns_url(url):
            logger.warning("subscription to %s NOT confirmed: SubscribeURL %r", topic, url)
            return
        try:
            status, _ = sns.url_fetch(url)
        except FetchFailed as exc:
            logger.error("subscription to %s NOT confirmed: %s", topic, exc)
            return
        if status == 200:
            logger.info("subscription to %s confirmed", topic)
        else:
            logger.error("subscription to %s NOT confirmed: %s", topic, status)

    def handle_unknown_notification_type(self, notification: dict[str, Any]) -> None:
        logger.info("SNS message of type %s ignored", notification.get("Type"))

    def handle_unknown_event_type(self, notification: dict[str, Any], message: dict[str, Any]):
        event_type = message.get("eventType", message.get("notificationType"))
        if event_type != "Reject":
            # django-ses's own handler logs the whole payload, recipients and all.
            logger.info("SES %s event ignored (SNS %s)", event_type, notification.get("MessageId"))
            return None
        reject_received.send(
            sender=type(self),
            mail_obj=message.get("mail"),
            reject_obj=message.get("reject", {}),
            raw_message=self.request.body,
        )
        return None


# --- receivers: signal -> service -----------------------------------------------------------
def _ids(mail_obj: Any, raw_message: Any) -> tuple[str, str]:
    """(SES message id, SNS message id) of a signal's arguments ("" when absent).

    The view only sends signals for checked messages, which have both; a signal sent from
    anywhere else without an SNS message id is ignored (it could not be deduplicated).
    """
    ses_id = mail_obj.get("messageId") if isinstance(mail_obj, dict) else None
    try:
        sns_id = json.loads(raw_message).get("MessageId")
    except (TypeError, ValueError, AttributeError, RecursionError):
        sns_id = None
    return (ses_id if isinstance(ses_id, str) else "", sns_id if isinstance(sns_id, str) else "")


def on_delivery(sender, mail_obj=None, delivery_obj=None, raw_message=b"", **kwargs) -> None:
    ses_id, sns_id = _ids(mail_obj, raw_message)
    if sns_id:
        feedback.ses_delivery_record(
            ses_message_id=ses_id, sns_message_id=sns_id, delivery=delivery_obj or {}
        )


def on_bounce(sender, mail_obj=None, bounce_obj=None, raw_message=b"", **kwargs) -> None:
    ses_id, sns_id = _ids(mail_obj, raw_message)
    if sns_id:
        feedback.ses_bounce_record(
            ses_message_id=ses_id, sns_message_id=sns_id, bounce=bounce_obj or {}
        )


def on_complaint(sender, mail_obj=None, complaint_obj=None, raw_message=b"", **kwargs) -> None:
    ses_id, sns_id = _ids(mail_obj, raw_message)
    if sns_id:
        feedback.ses_complaint_record(
            ses_message_id=ses_id, sns_message_id=sns_id, complaint=complaint_obj or {}
        )


def on_reject(sender, mail_obj=None, reject_obj=None, raw_message=b"", **kwargs) -> None:
    ses_id, sns_id = _ids(mail_obj, raw_message)
    if sns_id:
        feedback.ses_reject_record(
            ses_message_id=ses_id, sns_message_id=sns_id, reject=reject_obj or {}
        )


def receivers_connect() -> None:
    """Called once from ``NotificationsConfig.ready``."""
    signals.delivery_received.connect(on_delivery, dispatch_uid="notifications.delivery")
    signals.bounce_received.connect(on_bounce, dispatch_uid="notifications.bounce")
    signals.complaint_received.connect(on_complaint, dispatch_uid="notifications.complaint")
    reject_received.connect(on_reject, dispatch_uid="notifications.reject")

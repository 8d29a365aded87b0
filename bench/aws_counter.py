"""A counting reverse proxy on loopback in front of the emulator: AWS API calls per action.

Point ``AWS_ENDPOINT_URL`` of the shop's processes at ``AwsCounter.url`` and every AWS call
they make (boto3's, and kombu's own pycurl long polls, which botocore event hooks would not
see) passes through here on its way to moto, unchanged. Each request is tallied by service
(the SigV4 credential scope of its ``Authorization`` header) and action (``X-Amz-Target`` for
JSON protocols such as SQS's, the ``Action`` form field for query protocols such as SES v1's).

For SES ``SendRawEmail`` it also records when the emulator accepted the email (its answer
came back) and the order number in the email's subject: that is the email's arrival in the
emulator, for the order-to-inbox latency. For SQS ``SendMessageBatch`` it records each entry's
``Id`` that the emulator took (the outbox relay's ids are its rows: a row published twice
shows twice).

Faults, for the outbox figures (``bench/outbox_bench.py``): ``delay[service] = seconds``
holds every request of that service that long before forwarding it (SQS answering late), and
``after_answer`` is called with (service, action) once the emulator answered and before the
answer goes back (a benchmark kills the caller there: SQS took the batch, the caller never
hears so).
"""

from __future__ import annotations

import base64
import email
import email.policy
import http.client
import json
import re
import sys
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "expect",
}
_SCOPE_RE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_ORDER_RE = re.compile(r"#(\d+)")


def _service(headers) -> str:
    match = _SCOPE_RE.search(headers.get("Authorization", ""))
    return match.group(1) if match else "unsigned"


def _action(
    method: str, path: str, headers, body: bytes
) -> tuple[str, dict[str, list[str]] | None]:
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1], None
    if body and "x-www-form-urlencoded" in headers.get("Content-Type", ""):
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        return form.get("Action", ["?"])[0], form
    # A REST protocol (SES v2's GetAccount is GET /v2/email/account): the path names it.
    return f"{method} {urllib.parse.urlsplit(path).path}", None


def _subject_order(form: dict[str, list[str]] | None) -> int | None:
    """The order number in the subject of a SendRawEmail request ("Your order #42 is ...")."""
    data = (form or {}).get("RawMessage.Data")
    if not data:
        return None
    try:
        raw = base64.b64decode(data[0])
    except ValueError:
        return None
    header_end = raw.find(b"\r\n\r\n")
    if header_end == -1:
        header_end = raw.find(b"\n\n")
    message = email.message_from_bytes(raw[: max(header_end, 0)], policy=email.policy.default)
    match = _ORDER_RE.search(str(message.get("Subject", "")))
    return int(match.group(1)) if match else None


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a caller that went away (a killed relay, a stopped worker's long poll)
        super().handle_error(request, client_address)


class AwsCounter:
    """``with AwsCounter(upstream) as counter:`` a proxy at ``counter.url`` that counts."""

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname, parts.port or 80)
        self._lock = threading.Lock()
        self._calls: Counter[tuple[str, str]] = Counter()
        self._accepted: list[tuple[int, float]] = []
        self._log: list[tuple[float, str, str]] = []
        self._batch_ids: Counter[str] = Counter()
        self._local = threading.local()
        #: Seconds each request of a service waits before it is forwarded (default none).
        self.delay: dict[str, float] = {}
        #: Called with (service, action) after the emulator answered, before the caller hears.
        self.after_answer = None
        counter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                service = _service(self.headers)
                action, form = _action(self.command, self.path, self.headers, body)
                counter._count(service, action)
                if wait := counter.delay.get(service):
                    time.sleep(wait)
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in _HOP_BY_HOP
                }
                status, reason, response_headers, payload = counter._upstream_call(
                    self.command, self.path, body, headers
                )
                if action == "SendRawEmail" and status == 200:
                    accepted_at = time.time()
                    order = _subject_order(form)
                    if order is not None:
                        counter._accept(order, accepted_at)
                if action == "SendMessageBatch" and status == 200:
                    counter._batch(payload)
                if counter.after_answer is not None:
                    counter.after_answer(service, action)
                self.send_response_only(status, reason)
                for name, value in response_headers:
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    # A client that gave up (a stopped worker's long poll): nothing to answer.
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # --- the proxy ---------------------------------------------------------------------
    def _upstream_call(self, method: str, path: str, body: bytes, headers: dict[str, str]):
        for attempt in (1, 2):  # a kept-alive connection the server closed: open a new one
            connection = getattr(self._local, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection(*self._upstream, timeout=60)
                self._local.connection = connection
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
            except (http.client.HTTPException, OSError):
                connection.close()
                self._local.connection = None
                if attempt == 2:
                    raise
                continue
            return response.status, response.reason, response.getheaders(), payload
        raise AssertionError("unreachable")

    def _count(self, service: str, action: str) -> None:
        with self._lock:
            self._calls[(service, action)] += 1
            self._log.append((time.time(), service, action))

    def _batch(self, answer: bytes) -> None:
        try:
            taken = [item["Id"] for item in json.loads(answer).get("Successful", [])]
        except (ValueError, TypeError, KeyError):
            return  # not SQS's JSON protocol: not counted
        with self._lock:
            self._batch_ids.update(taken)

    def _accept(self, order: int, at: float) -> None:
        with self._lock:
            self._accepted.append((order, at))

    # --- what it saw -------------------------------------------------------------------
    def calls(self) -> Counter[tuple[str, str]]:
        """(service, action) -> requests so far."""
        with self._lock:
            return Counter(self._calls)

    def accepted(self) -> dict[int, float]:
        """Order number -> when SES first accepted an email about it (epoch seconds)."""
        with self._lock:
            first: dict[int, float] = {}
            for order, at in self._accepted:
                first.setdefault(order, at)
            return first

    def batch_ids(self) -> Counter[str]:
        """SendMessageBatch entry id -> how many times the emulator took it."""
        with self._lock:
            return Counter(self._batch_ids)

    def log(self) -> list[tuple[float, str, str]]:
        """Every call so far: (when it arrived, epoch s; service; action)."""
        with self._lock:
            return list(self._log)

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._accepted.clear()
            self._log.clear()
            self._batch_ids.clear()

    def __enter__(self) -> AwsCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

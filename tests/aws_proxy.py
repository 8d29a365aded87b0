"""AWS with faults, counted: a loopback HTTP proxy in front of the emulator.

``with AwsProxy(upstream) as proxy:`` and point a process's ``AWS_ENDPOINT_URL`` (or one
service's, ``AWS_ENDPOINT_URL_SES``...; or a test's ``settings.AWS_ENDPOINT_URL``) at
``proxy.url``: every call passes through to the emulator unchanged, and is counted by
service (the SigV4 credential scope of its ``Authorization`` header) and action
(``X-Amz-Target`` for JSON protocols such as SQS's, the ``Action`` form field for query
protocols such as SES v1's, "METHOD /path" for REST ones such as SES v2's). It sees what
botocore event hooks would not: kombu's own pycurl long polls too. Used by the tests and the
benchmarks (``bench/``).

Faults, switched on and off while it runs:

- **down** (``down("sqs")`` / ``up``): a call of that service is closed without an answer,
  as an unreachable endpoint does (botocore sees a connection error);
- **slow** (``delay["sqs"] = seconds``): every call of the service waits that long before it
  is forwarded (SQS answering late);
- **hold** an action before forwarding it (``hold("SendRawEmail")`` until ``release()``):
  if the caller disconnects meanwhile (its process was killed) the call is dropped, never
  forwarded, as AWS never receives a request whose sender died before it was sent. ``held``
  is set while one waits, with the caller's address in ``held_peers``;
- **withhold the answer** of an action (``withhold("SendMessageBatch")``): forward the call
  (AWS takes it), then keep the answer back until ``release()``, or for ``seconds`` (and for
  the next ``times`` calls only). ``withheld`` is set while one waits. A caller killed, or
  whose read timeout ends, meanwhile never learns that AWS took its call;
- ``after_answer(service, action)``, if set, is called once the emulator answered and before
  the answer goes back (a benchmark kills the caller there);
- **refuse entries** of a ``SendMessageBatch`` (``refuse_entries(predicate, times)``): an
  entry whose body matches is taken out of the call before it is forwarded and answered in
  ``Failed`` (``InternalError``), as SQS answers an entry it could not take;
- SES's sending rate: ``throttle(rate)`` answers a ``SendRawEmail`` that would make more than
  ``rate`` accepted in the last second as real SES does (HTTP 400, ``Throttling``, "Maximum
  sending rate exceeded."), not forwarded; ``throttle_next(n)`` so answers the next n sends
  whatever the rate; ``quota(rate)`` answers GetSendQuota with that MaxSendRate (the
  emulator's is fixed at 1).

What it saw: ``calls()`` ((service, action) -> calls), ``actions(service)`` (action ->
calls), ``log()`` (every call, when), ``sends()`` (every ``SendRawEmail``: when, the order
number in its subject, what the proxy did with it), ``accepted()`` (order number -> when SES
first accepted an email about it: its arrival, for the order-to-inbox latency),
``batch_ids()`` (``SendMessageBatch`` entry ids the emulator took: an outbox row published
twice shows twice) and ``refused``; ``reset()`` forgets them.

Why the standard library's ``http.server.ThreadingHTTPServer`` and ``http.client``: the
proxy answers a handful of loopback clients, and each fault needs the request in hand
between reading it and forwarding it (and the caller's socket, to see it gone). The
maintained proxies (mitmproxy's addons, pytest-httpserver, toxiproxy) either fault TCP
streams without reading AWS's actions, or need a further dependency and process for what
fits here in a few hundred lines with no dependency at all.
"""

from __future__ import annotations

import base64
import email
import email.policy
import http.client
import json
import re
import select
import socket
import sys
import threading
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
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
    "content-length",  # set again: a refused entry changes the body
}
_SCOPE_RE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_ORDER_RE = re.compile(r"#(\d+)")
#: Real SES's answer to a send above the account's maximum sending rate (Query API, v1).
THROTTLING_BODY = (
    '<ErrorResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/">\n'
    "  <Error>\n"
    "    <Type>Sender</Type>\n"
    "    <Code>Throttling</Code>\n"
    "    <Message>Maximum sending rate exceeded.</Message>\n"
    "  </Error>\n"
    "  <RequestId>{request_id}</RequestId>\n"
    "</ErrorResponse>\n"
).format

Answer = tuple[int, str, list[tuple[str, str]], bytes]


@dataclass(frozen=True)
class Send:
    """One ``SendRawEmail`` request as the proxy saw it."""

    at: float  # epoch seconds, when it arrived
    order: int | None  # the order number in the email's subject
    #: "forwarded" (SES accepted it, answered), "withheld" (accepted, the answer held back),
    #: "throttled" (answered Throttling, not forwarded), "dropped" (sender gone while held)
    outcome: str
    answered_at: float | None = None  # when SES's answer came back to the proxy


def _service(headers) -> str:
    match = _SCOPE_RE.search(headers.get("Authorization", ""))
    return match.group(1) if match else "unsigned"


def _action(method: str, path: str, headers, body: bytes) -> tuple[str, dict[str, list[str]]]:
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1], {}
    if body and "x-www-form-urlencoded" in headers.get("Content-Type", ""):
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        return form.get("Action", ["?"])[0], form
    # A REST protocol (SES v2's GetAccount is GET /v2/email/account): the path names it.
    return f"{method} {urllib.parse.urlsplit(path).path}", {}


def _subject_order(form: dict[str, list[str]]) -> int | None:
    """The order number in the subject of a SendRawEmail request ("Your order #42 is ...")."""
    data = form.get("RawMessage.Data")
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


def _peer_gone(sock: socket.socket) -> bool:
    """Whether the client closed its end (a killed process's socket reads as end-of-file)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a caller that went away (a killed relay, a stopped worker's long poll)
        super().handle_error(request, client_address)


class AwsProxy:
    """``with AwsProxy(upstream) as proxy:`` AWS at ``proxy.url``; see the module doc."""

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname, parts.port or 80)
        self._local = threading.local()  # one kept-alive upstream connection per thread
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)
        self._release_count = 0
        # faults
        self._down: set[str] = set()
        #: Seconds each call of a service waits before it is forwarded (default none).
        self.delay: dict[str, float] = {}
        self._hold: set[str] = set()
        self.held = threading.Event()
        self.held_peers: list[tuple[str, int]] = []
        #: action -> (seconds, or None: until release(); calls left, or None: all)
        self._withhold: dict[str, tuple[float | None, int | None]] = {}
        self.withheld = threading.Event()
        #: Called with (service, action) after the emulator answered, before the caller hears.
        self.after_answer: Callable[[str, str], None] | None = None
        self._refuse: tuple[Callable[[dict], bool], int] | None = None
        self._rate: float | None = None
        self._accepted_at: deque[float] = deque()
        self._throttle_next = 0
        self._max_send_rate: float | None = None
        # what it saw
        self._calls: Counter[tuple[str, str]] = Counter()
        self._log: list[tuple[float, str, str]] = []
        self._sends: list[Send] = []
        self._accepted: list[tuple[int, float]] = []
        self._batch_ids: Counter[str] = Counter()
        #: Entries refused so far (their Id and body).
        self.refused: list[dict] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def handle_one(self) -> None:
                answer = proxy._handle(self)
                if answer is None:  # down, or dropped: nothing to answer
                    self.close_connection = True
                    return
                status, reason, response_headers, payload = answer
                try:
                    self.send_response_only(status, reason)
                    for name, value in response_headers:
                        if name.lower() not in _HOP_BY_HOP:
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # a caller that gave up (a stopped worker's long poll)
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_one

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # --- faults --------------------------------------------------------------------------
    def down(self, service: str) -> None:
        with self._lock:
            self._down.add(service)

    def up(self, service: str) -> None:
        with self._lock:
            self._down.discard(service)

    def hold(self, action: str) -> None:
        """Hold every call of ``action`` from now on before forwarding it, until release()."""
        with self._lock:
            self._hold.add(action)
            self.held.clear()

    def withhold(self, action: str, *, seconds: float | None = None, times: int | None = None):
        """Forward each call of ``action``, then keep its answer back: until ``release()``
        (``seconds`` None) or that long; for the next ``times`` calls only (None: all)."""
        with self._lock:
            self._withhold[action] = (seconds, times)
            self.withheld.clear()

    def release(self) -> None:
        """Forward the held calls (those whose caller is still there), answer the withheld
        ones, and stop holding and withholding."""
        with self._lock:
            self._hold.clear()
            self._withhold.clear()
            self._release_count += 1
            self._released.notify_all()

    def refuse_entries(self, predicate: Callable[[dict], bool], times: int = 1) -> None:
        with self._lock:
            self._refuse = (predicate, times)

    def throttle(self, rate: float | None) -> None:
        """Answer ``Throttling`` to a send above ``rate`` accepted per second (None: never)."""
        with self._lock:
            self._rate = rate

    def throttle_next(self, sends: int) -> None:
        """Answer ``Throttling`` to the next ``sends`` sends, whatever the rate."""
        with self._lock:
            self._throttle_next = sends

    def quota(self, max_send_rate: float | None) -> None:
        """Answer GetSendQuota with this MaxSendRate (None: the emulator's answer)."""
        with self._lock:
            self._max_send_rate = max_send_rate

    # --- what it saw ---------------------------------------------------------------------
    def calls(self) -> Counter[tuple[str, str]]:
        """(service, action) -> calls so far."""
        with self._lock:
            return Counter(self._calls)

    def actions(self, service: str | None = None) -> Counter[str]:
        """action -> calls so far (of one service, or all)."""
        with self._lock:
            counts: Counter[str] = Counter()
            for (svc, action), n in self._calls.items():
                if service is None or svc == service:
                    counts[action] += n
            return counts

    def log(self) -> list[tuple[float, str, str]]:
        """Every call so far: (when it arrived, epoch s; service; action)."""
        with self._lock:
            return list(self._log)

    def sends(self) -> list[Send]:
        with self._lock:
            return list(self._sends)

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

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._log.clear()
            self._sends.clear()
            self._accepted.clear()
            self._batch_ids.clear()

    # --- the proxy -----------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> Answer | None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        arrived = time.time()
        service = _service(handler.headers)
        action, form = _action(handler.command, handler.path, handler.headers, body)
        with self._lock:
            self._calls[(service, action)] += 1
            self._log.append((arrived, service, action))
            down = service in self._down
        if down:
            handler.connection.shutdown(socket.SHUT_RDWR)
            return None
        if wait := self.delay.get(service):
            time.sleep(wait)
        if action == "GetSendQuota" and self._max_send_rate is not None:
            return self._quota_answer()
        order = _subject_order(form) if action == "SendRawEmail" else None
        if not self._held_until_released(handler, action):
            self._record_send(action, Send(arrived, order, "dropped"))
            return None
        if action == "SendRawEmail" and self._throttled(arrived):
            with self._lock:
                self._sends.append(Send(arrived, order, "throttled", time.time()))
                request_id = f"throttled-{len(self._sends)}"
            payload = THROTTLING_BODY(request_id=request_id).encode()
            return 400, "Bad Request", [("Content-Type", "text/xml")], payload
        withhold = self._withhold_now(action)

        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
        refused: list[dict] = []
        if action == "SendMessageBatch":
            body, refused = self._refuse_entries(body)
        if refused and not json.loads(body)["Entries"]:  # every entry refused
            answer: Answer = (
                200,
                "OK",
                [("Content-Type", "application/x-amz-json-1.0")],
                b'{"Successful": []}',
            )
        else:
            answer = self._forward(handler.command, handler.path, body, headers)
        status, reason, response_headers, payload = answer
        if refused and status == 200:
            reply = json.loads(payload)
            reply.setdefault("Failed", []).extend(
                {
                    "Id": entry["Id"],
                    "SenderFault": False,
                    "Code": "InternalError",
                    "Message": "refused by the test's proxy",
                }
                for entry in refused
            )
            answer = status, reason, response_headers, json.dumps(reply).encode()

        answered = time.time()
        if action == "SendRawEmail":  # recorded now: SES has taken it, whatever comes next
            outcome = "withheld" if withhold else "forwarded"
            self._record_send(action, Send(arrived, order, outcome, answered))
            if status == 200 and order is not None:
                with self._lock:
                    self._accepted.append((order, answered))
        if action == "SendMessageBatch" and status == 200:
            self._batch(payload)
        if self.after_answer is not None:
            self.after_answer(service, action)
        if withhold:
            self._wait_withheld(*withhold)
        return answer

    def _held_until_released(self, handler: BaseHTTPRequestHandler, action: str) -> bool:
        """Wait while ``action`` is held; False if the caller went away meanwhile."""
        with self._lock:
            if action not in self._hold:
                return True
            self.held_peers.append(handler.client_address)
            self.held.set()
            releases = self._release_count
            while True:
                if _peer_gone(handler.connection):  # checked once more after a release
                    return False
                if self._release_count != releases:
                    return True
                self._released.wait(0.05)

    def _throttled(self, arrived: float) -> bool:
        with self._lock:
            throttled = self._throttle_next > 0
            self._throttle_next -= throttled
            if self._rate is not None:
                while self._accepted_at and self._accepted_at[0] <= arrived - 1.0:
                    self._accepted_at.popleft()
                throttled = throttled or len(self._accepted_at) >= self._rate
                if not throttled:
                    self._accepted_at.append(arrived)
            return throttled

    def _withhold_now(self, action: str) -> tuple[float | None, int] | None:
        """Whether this call's answer is withheld: (seconds, or None: until the next release;
        the releases so far), or None."""
        with self._lock:
            if action not in self._withhold:
                return None
            seconds, times = self._withhold[action]
            if times is not None:
                if times <= 1:
                    del self._withhold[action]
                else:
                    self._withhold[action] = (seconds, times - 1)
            return seconds, self._release_count

    def _wait_withheld(self, seconds: float | None, releases: int) -> None:
        if seconds is not None:
            time.sleep(seconds)
            return
        with self._lock:
            self.withheld.set()
            self._released.wait_for(lambda: self._release_count != releases)

    def _record_send(self, action: str, send: Send) -> None:
        if action == "SendRawEmail":
            with self._lock:
                self._sends.append(send)

    def _refuse_entries(self, body: bytes) -> tuple[bytes, list[dict]]:
        with self._lock:
            if self._refuse is None:
                return body, []
            predicate, times = self._refuse
            request = json.loads(body)
            refused = [e for e in request.get("Entries", []) if predicate(e)][:times]
            if not refused:
                return body, []
            times -= len(refused)
            self._refuse = (predicate, times) if times > 0 else None
            self.refused.extend(refused)
        request["Entries"] = [e for e in request["Entries"] if e not in refused]
        return json.dumps(request).encode(), refused

    def _batch(self, answer: bytes) -> None:
        try:
            taken = [item["Id"] for item in json.loads(answer).get("Successful", [])]
        except (ValueError, TypeError, KeyError):
            return  # not SQS's JSON protocol: not counted
        with self._lock:
            self._batch_ids.update(taken)

    def _quota_answer(self) -> Answer:
        payload = (
            '<GetSendQuotaResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/">'
            "<GetSendQuotaResult><Max24HourSend>200000.0</Max24HourSend>"
            f"<MaxSendRate>{self._max_send_rate:.1f}</MaxSendRate>"
            "<SentLast24Hours>0.0</SentLast24Hours></GetSendQuotaResult>"
            "<ResponseMetadata><RequestId>quota</RequestId></ResponseMetadata>"
            "</GetSendQuotaResponse>"
        ).encode()
        return 200, "OK", [("Content-Type", "text/xml")], payload

    def _forward(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        headers = {**headers, "Content-Length": str(len(body))}
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

    def __enter__(self) -> AwsProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

"""A faulty SES in front of the emulator's: a loopback HTTP proxy that injects SES's faults.

Point a worker's ``AWS_ENDPOINT_URL_SES`` at ``SesProxy.url``: every SES call passes through
to the emulator unchanged, except ``SendRawEmail`` (the send), which the proxy can

- **hold** before forwarding it (``hold()``): the request waits here until ``release()``;
  if the sender disconnects meanwhile (its process was killed), the send is dropped, never
  forwarded, as a real SES never receives a request whose sender died before it was sent.
  ``held`` is set while one is waiting, with the sender's address in ``held_peers``;
- **throttle** above ``rate`` sends per second (``throttle(rate)``): a send that would make
  more than ``rate`` accepted in the last second is answered as real SES answers it, HTTP 400
  with the error ``Throttling`` "Maximum sending rate exceeded.", and not forwarded;
- **withhold the answer** (``withhold_answers(seconds)``): forward the send (SES accepts
  it), then keep the answer back for ``seconds`` before replying, as a slow network or an
  overloaded SES can. A client whose read timeout is shorter has given up by then.

``throttle_next(n)`` answers ``Throttling`` to the next n sends whatever the rate, and
``quota(rate)`` answers GetSendQuota with that MaxSendRate (the emulator's is fixed at 1).

It records every ``SendRawEmail`` it saw: when, what it did with it, and the answer.
Used by the tests (``tests/notifications/test_worker_faults.py``...) and ``bench/``.
"""

from __future__ import annotations

import base64
import email
import email.policy
import http.client
import re
import select
import socket
import threading
import time
import urllib.parse
from collections import deque
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
}
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


@dataclass(frozen=True)
class Send:
    """One ``SendRawEmail`` request as the proxy saw it."""

    at: float  # epoch seconds, when it arrived
    order: int | None  # the order number in the email's subject
    #: "forwarded" (SES accepted it, answered), "withheld" (accepted, the answer held back),
    #: "throttled" (answered Throttling, not forwarded), "dropped" (sender gone while held)
    outcome: str
    answered_at: float | None = None  # when SES's answer came back to the proxy


def _order(form: dict[str, list[str]]) -> int | None:
    data = form.get("RawMessage.Data")
    if not data:
        return None
    try:
        raw = base64.b64decode(data[0])
    except ValueError:
        return None
    head = raw.split(b"\r\n\r\n", 1)[0]
    message = email.message_from_bytes(head, policy=email.policy.default)
    match = _ORDER_RE.search(str(message.get("Subject", "")))
    return int(match.group(1)) if match else None


def _peer_gone(sock: socket.socket) -> bool:
    """Whether the client closed its end (a killed process's socket reads as end-of-file)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class SesProxy:
    """``with SesProxy(upstream) as proxy:`` SES at ``proxy.url``, faults on demand."""

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname, parts.port or 80)
        self._lock = threading.Lock()
        self._sends: list[Send] = []
        self._accepted_at: deque[float] = deque()
        self._hold = False
        self._released = threading.Condition(self._lock)
        self._release_count = 0
        self._rate: float | None = None
        self._withhold = 0.0
        self._withhold_left: int | None = None
        self._throttle_next = 0
        self._max_send_rate: float | None = None
        self.held = threading.Event()
        self.held_peers: list[tuple[str, int]] = []
        self._local = threading.local()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                form = {}
                if "x-www-form-urlencoded" in self.headers.get("Content-Type", ""):
                    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in _HOP_BY_HOP
                }
                action = form.get("Action", [""])[0]
                if action == "SendRawEmail":
                    answer = proxy._send(self, form, body, headers)
                elif action == "GetSendQuota" and proxy._max_send_rate is not None:
                    answer = proxy._quota_answer()
                else:
                    answer = proxy._forward(self.command, self.path, body, headers)
                if answer is None:  # dropped: the sender is gone, nothing to answer
                    self.close_connection = True
                    return
                status, reason, response_headers, payload = answer
                try:
                    self.send_response_only(status, reason)
                    for name, value in response_headers:
                        if name.lower() not in _HOP_BY_HOP | {"content-length"}:
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_one

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # --- faults, switched on and off by the test ------------------------------------------
    def hold(self) -> None:
        """Hold every send from now on before forwarding it, until ``release()``."""
        with self._lock:
            self._hold = True
            self.held.clear()

    def release(self) -> None:
        """Forward the held sends (those whose sender is still there) and stop holding."""
        with self._lock:
            self._hold = False
            self._release_count += 1
            self._released.notify_all()

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

    def withhold_answers(self, seconds: float, *, sends: int | None = None) -> None:
        """Forward each send, then hold SES's answer back this long (0: answer at once), for
        the next ``sends`` sends only (None: all of them)."""
        with self._lock:
            self._withhold = seconds
            self._withhold_left = sends

    # --- what it saw --------------------------------------------------------------------
    def sends(self) -> list[Send]:
        with self._lock:
            return list(self._sends)

    # --- the proxy ------------------------------------------------------------------------
    def _send(self, handler: BaseHTTPRequestHandler, form, body: bytes, headers):
        arrived = time.time()
        order = _order(form)
        with self._lock:
            if self._hold:
                self.held_peers.append(handler.client_address)
                self.held.set()
                releases = self._release_count
                while True:
                    if _peer_gone(handler.connection):  # checked once more after a release
                        self._sends.append(Send(arrived, order, "dropped"))
                        return None
                    if self._release_count != releases:
                        break
                    self._released.wait(0.05)
            throttled = self._throttle_next > 0
            self._throttle_next -= throttled
            if self._rate is not None:
                while self._accepted_at and self._accepted_at[0] <= arrived - 1.0:
                    self._accepted_at.popleft()
                throttled = throttled or len(self._accepted_at) >= self._rate
                if not throttled:
                    self._accepted_at.append(arrived)
            if throttled:
                self._sends.append(Send(arrived, order, "throttled", time.time()))
                request_id = f"throttled-{len(self._sends)}"
                payload = THROTTLING_BODY(request_id=request_id).encode()
                return 400, "Bad Request", [("Content-Type", "text/xml")], payload
            withhold = self._withhold
            if withhold and self._withhold_left is not None:
                self._withhold_left -= 1
                if self._withhold_left <= 0:
                    self._withhold, self._withhold_left = 0.0, None
        answer = self._forward(handler.command, handler.path, body, headers)
        with self._lock:  # recorded now: SES has taken it, whatever becomes of the answer
            outcome = "withheld" if withhold else "forwarded"
            self._sends.append(Send(arrived, order, outcome, time.time()))
        if withhold:
            time.sleep(withhold)
        return answer

    def _quota_answer(self):
        payload = (
            '<GetSendQuotaResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/">'
            "<GetSendQuotaResult><Max24HourSend>200000.0</Max24HourSend>"
            f"<MaxSendRate>{self._max_send_rate:.1f}</MaxSendRate>"
            "<SentLast24Hours>0.0</SentLast24Hours></GetSendQuotaResult>"
            "<ResponseMetadata><RequestId>quota</RequestId></ResponseMetadata>"
            "</GetSendQuotaResponse>"
        ).encode()
        return 200, "OK", [("Content-Type", "text/xml")], payload

    def _forward(self, method: str, path: str, body: bytes, headers):
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

    def __enter__(self) -> SesProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

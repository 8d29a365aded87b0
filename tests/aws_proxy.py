"""A faulty SQS and SNS in front of the emulator: a loopback HTTP proxy for the outbox tests.

Point a process's ``AWS_ENDPOINT_URL`` (or the test's ``settings.AWS_ENDPOINT_URL``) at
``AwsProxy.url``: every call passes through to the emulator unchanged and is counted by
(service, action), except that the proxy can

- **be down** for a service (``down("sqs")``): the connection is closed without an answer,
  as an unreachable endpoint does (botocore sees a connection error);
- **withhold the answer** of an action (``withhold("SendMessageBatch")``): the call is
  forwarded (SQS takes the messages), then its answer waits until ``release()``; the client
  sees nothing meanwhile. ``withheld`` is set while one waits. A client killed meanwhile
  never learns that SQS took its batch;
- **refuse one entry** of a ``SendMessageBatch`` (``refuse_entries(predicate, times)``):
  an entry whose body matches is taken out of the call before it is forwarded and answered
  in ``Failed`` (``InternalError``), as SQS answers an entry it could not take.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable
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
    "content-length",
}
_SCOPE_RE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")


def _service(headers) -> str:
    match = _SCOPE_RE.search(headers.get("Authorization", ""))
    return match.group(1) if match else "unsigned"


def _action(headers, body: bytes) -> str:
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    if body and "x-www-form-urlencoded" in headers.get("Content-Type", ""):
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        return form.get("Action", ["?"])[0]
    return "?"


class AwsProxy:
    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname, parts.port or 80)
        self._lock = threading.Lock()
        self._calls: Counter[tuple[str, str]] = Counter()
        self._down: set[str] = set()
        self._withhold: set[str] = set()
        self._released = threading.Event()
        self.withheld = threading.Event()
        self._refuse: tuple[Callable[[dict], bool], int] | None = None
        #: Entries refused so far (their Id and body).
        self.refused: list[dict] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                service, action = _service(self.headers), _action(self.headers, body)
                with proxy._lock:
                    proxy._calls[(service, action)] += 1
                    down = service in proxy._down
                if down:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                refused: list[dict] = []
                if action == "SendMessageBatch":
                    body, refused = proxy._refuse_entries(body)
                if refused and not json.loads(body)["Entries"]:  # every entry refused
                    status, reason, payload = 200, "OK", b'{"Successful": []}'
                    response_headers = [("Content-Type", "application/x-amz-json-1.0")]
                else:
                    status, reason, response_headers, payload = proxy._upstream_call(
                        self.command, self.path, body, headers
                    )
                if refused and status == 200:
                    answer = json.loads(payload)
                    answer.setdefault("Failed", []).extend(
                        {
                            "Id": entry["Id"],
                            "SenderFault": False,
                            "Code": "InternalError",
                            "Message": "refused by the test's proxy",
                        }
                        for entry in refused
                    )
                    payload = json.dumps(answer).encode()
                if action in proxy._withhold:
                    proxy.withheld.set()
                    proxy._released.wait()
                self.send_response_only(status, reason)
                for name, value in response_headers:
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._local = threading.local()

    def _upstream_call(self, method: str, path: str, body: bytes, headers: dict[str, str]):
        headers = {**headers, "Content-Length": str(len(body))}
        for attempt in (1, 2):
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

    # --- faults --------------------------------------------------------------------------
    def down(self, service: str) -> None:
        with self._lock:
            self._down.add(service)

    def up(self, service: str) -> None:
        with self._lock:
            self._down.discard(service)

    def withhold(self, action: str) -> None:
        self._released.clear()
        self.withheld.clear()
        self._withhold.add(action)

    def release(self) -> None:
        self._withhold.clear()
        self._released.set()

    def refuse_entries(self, predicate: Callable[[dict], bool], times: int = 1) -> None:
        with self._lock:
            self._refuse = (predicate, times)

    # --- what it saw ---------------------------------------------------------------------
    def calls(self, service: str | None = None) -> Counter[str]:
        """action -> calls so far (of one service, or all)."""
        with self._lock:
            counts: Counter[str] = Counter()
            for (svc, action), n in self._calls.items():
                if service is None or svc == service:
                    counts[action] += n
            return counts

    def __enter__(self) -> AwsProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

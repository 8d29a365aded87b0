"""Bounded HTTPS GETs to the shop's neighbours: Cognito's key set, SNS's certificates and
subscription URLs. One home for the rule every such fetch follows:

- 1 s to connect, 2 s for each read and 2 s for the whole body (a server that trickles
  bytes is cut off as surely as one that never answers);
- at most ``max_bytes`` of body, never decompressed (nothing asks for compression);
- no redirects (a trusted URL must not hand the fetch on to another host) and no retries
  (the caller decides what a failure means);
- TLS verified against the system's CAs (OpenSSL's defaults, so ``SSL_CERT_FILE`` is
  honoured).

urllib3 (installed with botocore) for its separate connect and read timeouts, which the
standard library's ``urlopen`` has not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import urllib3

CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 2.0
_CHUNK = 16 * 1024

_pool = urllib3.PoolManager(
    retries=False,
    timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
    num_pools=8,
    maxsize=4,
)


class FetchFailed(Exception):
    """No usable answer: refused, timed out, cut off, too large, or not HTTP at all. The
    message says why (not which URL: the caller knows)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str


def bounded_get(url: str, *, max_bytes: int, accept: str = "*/*") -> Answer:
    """GET ``url`` within the module's bounds; any status is an answer, the caller judges it."""
    try:
        response = _pool.request(
            "GET",
            url,
            headers={"Accept": accept, "Accept-Encoding": "identity"},
            preload_content=False,
            decode_content=False,
            redirect=False,
        )
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        raise FetchFailed(str(exc)) from exc
    deadline = time.monotonic() + READ_TIMEOUT
    complete = False
    try:
        if response.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise FetchFailed("a compressed answer")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = response.read1(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise FetchFailed(f"more than {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise FetchFailed(f"the answer took longer than {READ_TIMEOUT:g} s")
            chunks.append(chunk)
        complete = True
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise FetchFailed(str(exc)) from exc
    finally:
        if complete:
            response.release_conn()
        else:
            response.close()  # mid-answer: the connection cannot be reused
    return Answer(response.status, b"".join(chunks), response.headers.get("Content-Type", ""))

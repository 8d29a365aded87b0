"""The bare WSGI "ok" app: the ceiling of gunicorn under the shop's settings (figure 1a).

No Django, no database: ``gunicorn --pythonpath bench wsgi_ok`` with the same worker count,
class and flags as the shop, so that the shop's own rungs are measured against what the
server alone can do on this machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

BODY = b"ok\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
    start_response("200 OK", HEADERS)
    return [BODY]

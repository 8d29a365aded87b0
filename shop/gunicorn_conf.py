"""gunicorn's configuration: its own log lines in the shop's format (JSON in production).

``gunicorn -c python:shop.gunicorn_conf shop.wsgi`` (or ``GUNICORN_CMD_ARGS="-c
python:shop.gunicorn_conf"``). Without it, gunicorn's workers still log through the shop's
``LOGGING`` once Django starts in them, but the master process ("Booting worker", "WORKER
TIMEOUT") prints gunicorn's plain format, and gunicorn believes X-Forwarded-Proto from
127.0.0.1. With it, access lines are logged too.
"""

from shop.settings import LOGGING

logconfig_dict = LOGGING

# Forwarding headers are the shop's to judge (shop/proxies.py, TRUSTED_PROXY_CIDRS): gunicorn
# itself believes none. Its defaults would let 127.0.0.1 set the scheme with X-Forwarded-Proto
# (wsgi.url_scheme, which Django falls back on) and SCRIPT_NAME/PATH_INFO with headers.
forwarded_allow_ips = ""
secure_scheme_headers: dict[str, str] = {}

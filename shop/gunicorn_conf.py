"""gunicorn's configuration: its own log lines in the shop's format (JSON in production).

``gunicorn -c python:shop.gunicorn_conf shop.wsgi`` (or ``GUNICORN_CMD_ARGS="-c
python:shop.gunicorn_conf"``). Without it, gunicorn's workers still log through the shop's
``LOGGING`` once Django starts in them, but the master process ("Booting worker", "WORKER
TIMEOUT") prints gunicorn's plain format, and gunicorn believes X-Forwarded-Proto from
127.0.0.1. With it, access lines are logged too.
"""

import os

# As shop.wsgi does: production's settings unless told otherwise (fail closed). The master
# process reads them here, before any worker imports the application.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings.production")

from django.conf import settings

logconfig_dict = settings.LOGGING

# Forwarding headers are the shop's to judge (shop/web/proxies.py, TRUSTED_PROXY_CIDRS): gunicorn
# itself believes none. Its defaults would let 127.0.0.1 set the scheme with X-Forwarded-Proto
# (wsgi.url_scheme, which Django falls back on) and SCRIPT_NAME/PATH_INFO with headers.
forwarded_allow_ips = ""
secure_scheme_headers: dict[str, str] = {}

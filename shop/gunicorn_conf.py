"""gunicorn's configuration: its own log lines in the shop's format (JSON in production).

``gunicorn -c python:shop.gunicorn_conf shop.wsgi`` (or ``GUNICORN_CMD_ARGS="-c
python:shop.gunicorn_conf"``). Without it, gunicorn's workers still log through the shop's
``LOGGING`` once Django starts in them, but the master process ("Booting worker", "WORKER
TIMEOUT") prints gunicorn's plain format. With it, access lines are logged too.
"""

from shop.settings import LOGGING

logconfig_dict = LOGGING

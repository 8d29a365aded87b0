# One image for every process of the shop; only the command differs (docs/deployment.md "Docker"):
#   web (default)  gunicorn shop.wsgi ...
#   worker         celery -A shop worker --loglevel INFO
#   relay          python manage.py outbox_relay
#   release step   python manage.py migrate
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The processes run as this user (USER below, by number); it owns nothing in the image, so it
# cannot change the code.
RUN groupadd --system --gid 10001 shop \
    && useradd --system --uid 10001 --gid shop --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin shop

WORKDIR /app

# Dependencies first: this layer is reused until the lock changes. requirements.lock pins every
# package with PyPI's hashes (`make lock` compiles it from requirements.txt); pip refuses
# anything else. All are manylinux wheels (pycurl and psycopg carry their own libcurl, libpq).
COPY requirements.lock .
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

COPY . .

# Static files for whitenoise (hashed and compressed, as DEBUG off serves them). Production's
# settings refuse to load unless the required variables are set: these placeholders serve this
# build step only and are not in the image's environment.
RUN DJANGO_SECRET_KEY=collectstatic-only DATABASE_URL=sqlite:///:memory: \
    ORDER_QUEUE_URL=unused COGNITO_USER_POOL_ID=unused COGNITO_APP_CLIENT_ID=unused \
    python manage.py collectstatic --noinput

USER 10001:10001

# Metrics: each process writes its counters under PROMETHEUS_MULTIPROC_DIR (memory, fresh at
# every container start) and a scrape sums them. The worker serves its own on
# WORKER_METRICS_PORT (set it, e.g. 9808, for the worker container).
ENV DJANGO_SETTINGS_MODULE=shop.settings.production \
    WEB_CONCURRENCY=3 \
    PROMETHEUS_MULTIPROC_DIR=/dev/shm/prometheus
EXPOSE 8000

# /healthz answers before host validation and the HTTPS redirect. The worker and the sweep serve
# no HTTP: run them with `docker run --no-healthcheck`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]

# Workers: WEB_CONCURRENCY (gunicorn reads it). The heartbeat files go to memory, and no
# control socket is needed in a container. shop.gunicorn_conf makes gunicorn's own lines JSON.
CMD ["gunicorn", "shop.wsgi", "-c", "python:shop.gunicorn_conf", "--bind", "0.0.0.0:8000", "--worker-tmp-dir", "/dev/shm", "--no-control-socket", "--access-logfile", "-"]

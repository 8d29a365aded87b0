"""Settings every environment shares; ``development``, ``production`` and ``test`` build on it.

Every value that differs between environments comes from the environment, read here once
through django-environ. Nothing else in the project reads ``os.environ``. The defaults here
of the variables whose default depends on the environment come from
``shop.settings.environment`` (production's, fail closed, unless the settings module is
``development``'s); ``shop.settings.production`` refuses to start without
``REQUIRED_IN_PRODUCTION``.
"""

import ipaddress
from datetime import timedelta
from urllib.parse import urlsplit

from corsheaders.defaults import default_headers
from django.core.exceptions import ImproperlyConfigured

from shop.settings.environment import BASE_DIR, default, env

DEBUG = env.bool("DJANGO_DEBUG", default=default("DJANGO_DEBUG"))

# Checked by shop.settings.production: without these, every process refuses to start.
REQUIRED_IN_PRODUCTION = (
    "DJANGO_SECRET_KEY",
    # Not a SQLite file in the container that nobody backs up.
    "DATABASE_URL",
    "ORDER_QUEUE_URL",
    "COGNITO_USER_POOL_ID",
    "COGNITO_APP_CLIENT_ID",
)

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=default("DJANGO_SECRET_KEY"))
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=default("DJANGO_ALLOWED_HOSTS"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "drf_standardized_errors",
    "django_ses",
    "corsheaders",
    "shop",
    "orders",
    "notifications",
]

MIDDLEWARE = [
    # First: the client's address and X-Forwarded-Proto, believed from TRUSTED_PROXY_CIDRS only.
    "shop.web.proxies.TrustedProxyMiddleware",
    "shop.web.middleware.HealthCheckMiddleware",
    # /metrics for METRICS_ALLOWED_IPS, before host validation and the HTTPS redirect.
    "shop.observability.metrics.MetricsMiddleware",
    # CORS for CORS_ALLOWED_ORIGINS (preflights answered here), before anything else answers.
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Django's session, user and message middleware, for everything but /api/ (the token API
    # reads no cookie): shop/web/middleware.py.
    "shop.web.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "shop.web.middleware.AuthenticationMiddleware",
    "shop.web.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Which web service this process is (docs/deployment.md), from the same image:
# "all" (the default: the admin and the public API together, as make run and the tests run
# them), "api" (the public API and the SES events webhook: no admin URLs, no queue reads) or
# "admin" (the admin and its queue pages). Each has its own IAM role (infra/shop.yaml).
SHOP_SERVICES = {"all": "shop.urls", "api": "shop.urls_api", "admin": "shop.urls_admin"}
SHOP_SERVICE = env.str("SHOP_SERVICE", default="all").lower()
if SHOP_SERVICE not in SHOP_SERVICES:
    raise ImproperlyConfigured("SHOP_SERVICE must be all, api or admin")
ROOT_URLCONF = SHOP_SERVICES[SHOP_SERVICE]
# /metrics shows the queue pair's depth (read from SQS at each scrape) where the admin is:
# the public API's role may not read the dead-letter queue.
METRICS_QUEUE_DEPTH = SHOP_SERVICE != "api"
WSGI_APPLICATION = "shop.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# Persistent connections (seconds; 0: a new one per request). Opening a PostgreSQL connection
# cost more than the rest of a small API request (bench/http_bench.py, docs/performance.md).
# Checked before reuse, so a connection the server dropped is replaced, not an error.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DATABASE_CONN_HEALTH_CHECKS", default=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE: a transaction takes SQLite's write lock when it begins, so transactions that
    # read-then-write (stock, the email claim) are serialized as row locks do on PostgreSQL.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Rate-limit counters. Per process by default; with several web processes set a shared cache,
# e.g. CACHE_URL=redis://host:6379/1 or dbcache://shop_cache (then `manage.py createcachetable`).
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Request bodies: JSON bodies larger than this are refused with 413 by the API's parser.
DATA_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024

# --- Security (production) --------------------------------------------------------------
# Load balancers (or other proxies) whose X-Forwarded-For and X-Forwarded-Proto are believed
# (shop/web/proxies.py): addresses or networks, e.g. the VPC's range behind an AWS load balancer.
# Empty (the default): none; the socket's peer is the client and HTTPS is what it spoke.
TRUSTED_PROXY_CIDRS = env.list("TRUSTED_PROXY_CIDRS", default=[])
for _network in TRUSTED_PROXY_CIDRS:
    try:
        ipaddress.ip_network(_network.strip(), strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"TRUSTED_PROXY_CIDRS: {_network!r} is not an IP address or network"
        ) from None
# The header is dropped from any other peer before Django reads it.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXY_CIDRS else None
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = 0 if DEBUG else 60 * 60 * 24 * 365
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True

# Browsers: a front end on another origin may call the API (django-cors-headers). Exact
# origins ("https://shop.example.com"); empty (the default): no cross-origin access at all.
# ID tokens travel in the Authorization header, never in cookies: no credentials mode.
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_HEADERS = (*default_headers, "idempotency-key")
CORS_EXPOSE_HEADERS = ["Location", "Idempotent-Replayed", "Retry-After", "WWW-Authenticate"]

# --- REST API ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["shop.web.authentication.CognitoIdTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["shop.web.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "drf_standardized_errors.handler.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_standardized_errors.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    # Throttles key anonymous clients on REMOTE_ADDR, which shop.web.proxies has made the real
    # client: never on a raw X-Forwarded-For.
    "NUM_PROXIES": 0,
    # Anonymous requests (the public catalog, the schema) per client address; a customer's
    # requests are not limited by it. The counters live in the default cache.
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.AnonRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("ANONYMOUS_REQUEST_RATE", default="600/minute"),
        # Order placement per customer.
        "order_placement": env.str("ORDER_PLACEMENT_RATE", default="30/minute"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Shop API",
    "DESCRIPTION": "Orders for customers signed in with Amazon Cognito.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Built once per process, not per request (shop/web/api.py).
    "DEFAULT_GENERATOR_CLASS": "shop.web.api.SchemaGenerator",
    "ENUM_NAME_OVERRIDES": {
        name: f"drf_standardized_errors.openapi_serializers.{name}.choices"
        for name in [
            "ValidationErrorEnum",
            "ClientErrorEnum",
            "ServerErrorEnum",
            "ErrorCode401Enum",
            "ErrorCode403Enum",
            "ErrorCode404Enum",
            "ErrorCode405Enum",
            "ErrorCode406Enum",
            "ErrorCode415Enum",
            "ErrorCode429Enum",
            "ErrorCode500Enum",
        ]
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_standardized_errors.openapi_hooks.postprocess_schema_enums",
        "shop.web.api.schema_index_attrs",
    ],
}
DRF_STANDARDIZED_ERRORS = {
    "EXCEPTION_HANDLER_CLASS": "shop.web.api.ExceptionHandler",
    "ENABLE_IN_DEBUG_FOR_UNHANDLED_EXCEPTIONS": True,
    "ALLOWED_ERROR_STATUS_CODES": ["400", "401", "404", "405", "413", "415", "429", "503"],
    "ERROR_SCHEMAS": {
        "409": "shop.web.api.ConflictErrorResponseSerializer",
        "413": "shop.web.api.PayloadTooLargeErrorResponseSerializer",
        "422": "shop.web.api.UnprocessableErrorResponseSerializer",
        "503": "shop.web.api.ServiceUnavailableErrorResponseSerializer",
    },
}

# --- AWS --------------------------------------------------------------------------------
AWS_REGION = env.str("AWS_REGION", default="us-east-1")
# boto3's standard variable; unset on AWS. Every AWS client of the project follows it.
AWS_ENDPOINT_URL = env.str("AWS_ENDPOINT_URL", default=default("AWS_ENDPOINT_URL"))
# boto3's service-specific variables (``AWS_ENDPOINT_URL_<service id>``) win over it for their
# service, as in boto3 itself. boto3 reads them only when a client is built without an
# ``endpoint_url``; the project passes one (from settings, which tests change), so they are
# read here, once: service name -> URL, only those set (empty counts as unset).
AWS_ENDPOINT_URLS = {
    service: url
    for service, variable in (
        ("sqs", "AWS_ENDPOINT_URL_SQS"),
        ("sns", "AWS_ENDPOINT_URL_SNS"),
        ("ses", "AWS_ENDPOINT_URL_SES"),
        ("cognito-idp", "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER"),
    )
    if (url := env.str(variable, default=""))
}
AWS_SQS_ENDPOINT_URL = AWS_ENDPOINT_URLS.get("sqs", AWS_ENDPOINT_URL)
AWS_COGNITO_ENDPOINT_URL = AWS_ENDPOINT_URLS.get("cognito-idp", AWS_ENDPOINT_URL)
ORDER_QUEUE_URL = env.str("ORDER_QUEUE_URL", default=default("ORDER_QUEUE_URL"))
# SNS topic that gets an `OrderPlaced` event per order (orders/events.py); empty: off.
ORDER_EVENTS_TOPIC_ARN = env.str("ORDER_EVENTS_TOPIC_ARN", default="")

# --- Cognito ----------------------------------------------------------------------------
COGNITO_USER_POOL_ID = env.str("COGNITO_USER_POOL_ID", default="")
COGNITO_APP_CLIENT_ID = env.str("COGNITO_APP_CLIENT_ID", default="")
# Empty counts as unset for the optional overrides (as in .env.example).
COGNITO_ISSUER = env.str("COGNITO_ISSUER", default="") or (
    f"https://cognito-idp.{AWS_REGION}.amazonaws.com/{COGNITO_USER_POOL_ID}"
)
COGNITO_JWKS_URL = env.str("COGNITO_JWKS_URL", default="") or (
    f"{AWS_COGNITO_ENDPOINT_URL.rstrip('/')}/{COGNITO_USER_POOL_ID}/.well-known/jwks.json"
    if AWS_COGNITO_ENDPOINT_URL
    else f"{COGNITO_ISSUER}/.well-known/jwks.json"
)
COGNITO_REQUIRE_EMAIL_VERIFIED = env.bool("COGNITO_REQUIRE_EMAIL_VERIFIED", default=True)
# Leeway for `exp`/`iat` against clock skew; the issue caps it at 30 s.
COGNITO_LEEWAY_SECONDS = 30
# An unknown `kid` refetches the key set at most this often (lower it only in tests).
COGNITO_JWKS_MIN_REFETCH_SECONDS = env.float("COGNITO_JWKS_MIN_REFETCH_SECONDS", default=60)
# A key set older than this is fetched again at the next request (once a minute at most; a
# failure keeps the old one), so that keys Cognito retired stop verifying.
COGNITO_JWKS_MAX_AGE_SECONDS = 3600

# --- Email (SES through django-ses) -----------------------------------------------------
EMAIL_BACKEND = "django_ses.SESBackend"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="shop@example.com")
AWS_SES_REGION_NAME = AWS_REGION
AWS_SES_REGION_ENDPOINT = f"email.{AWS_REGION}.amazonaws.com"
# boto3's service-specific variable, if set, wins for SES (as it does in boto3 itself).
AWS_SES_ENDPOINT_URL = AWS_ENDPOINT_URLS.get("ses", AWS_ENDPOINT_URL)
# django-ses ignores AWS_ENDPOINT_URL and reads its own setting.
AWS_SES_REGION_ENDPOINT_URL = AWS_SES_ENDPOINT_URL or None
# SES's send rate for the whole fleet, sends per second (notifications.send_rate: one
# schedule in PostgreSQL shared by every worker process). Unset: the account's MaxSendRate
# from SES's GetSendQuota (empty counts as unset).
SES_MAX_SEND_RATE: float | None = None
if _send_rate := env.str("SES_MAX_SEND_RATE", default=""):
    try:
        SES_MAX_SEND_RATE = float(_send_rate)
    except ValueError:
        SES_MAX_SEND_RATE = 0.0
    if not SES_MAX_SEND_RATE > 0:
        raise ImproperlyConfigured("SES_MAX_SEND_RATE must be a number of sends per second > 0")
# django-ses's own pacing is off: it paces each process alone (N processes, N times the rate)
# and would pace again what the fleet's schedule already paced.
AWS_SES_AUTO_THROTTLE = None
if env.float("AWS_SES_AUTO_THROTTLE", default=0):
    raise ImproperlyConfigured(
        "AWS_SES_AUTO_THROTTLE is not used: sends are paced for the whole fleet by "
        "SES_MAX_SEND_RATE (docs/configuration.md)"
    )
# Seconds the worker waits for SES's answer to a send (one attempt, never repeated by
# botocore). An answer later than this is a failed attempt although SES may have taken the
# email: the redelivery then sends it again (docs/guarantees.md, the duplicate window).
SES_READ_TIMEOUT = env.float("SES_READ_TIMEOUT", default=10)
# SES events (docs/emails.md "SES events and the suppression list"). django-ses names this
# configuration set on every email (X-SES-CONFIGURATION-SET), so SES publishes its events to
# the set's SNS topic, which POSTs them to /ses/events/. Empty: no set, no events.
AWS_SES_CONFIGURATION_SET = env.str("AWS_SES_CONFIGURATION_SET", default="")
# Always verify SNS signatures (DEBUG too); the tests sign their own messages.
AWS_SES_VERIFY_EVENT_SIGNATURES = True
# The SNS topic(s) whose messages /ses/events/ accepts; empty: it accepts none.
AWS_SNS_EVENT_TRUSTED_TOPIC_ARNS = env.list("SES_EVENTS_TOPIC_ARNS", default=[])
# Hosts (exact names, any port) the SigningCertURL and SubscribeURL of those messages may be
# on besides sns.<AWS_REGION>.amazonaws.com (always, port 443 only): for tests.
SNS_CERT_TRUSTED_DOMAINS = env.list("SNS_CERT_TRUSTED_DOMAINS", default=[])
SES_SANDBOX = env.str("SES_SANDBOX", default="auto").lower()
if SES_SANDBOX not in {"auto", "true", "false"}:
    raise ImproperlyConfigured("SES_SANDBOX must be auto, true or false")

SHOP_CURRENCY = env.str("SHOP_CURRENCY", default="USD").upper()
# How long an Idempotency-Key of order placement is remembered.
IDEMPOTENCY_KEY_TTL = timedelta(hours=env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=24))

# --- Logs and metrics (docs/operations.md "Logs", "Metrics") ---------------------------------
# `json`: one JSON object per line (python-json-logger), with order_id/task_id when known
# (shop/observability/logging.py). `plain` for reading in a terminal.
LOG_FORMAT = env.str("LOG_FORMAT", default=default("LOG_FORMAT")).lower()
if LOG_FORMAT not in {"json", "plain"}:
    raise ImproperlyConfigured("LOG_FORMAT must be json or plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"log_context": {"()": "shop.observability.logging.ContextFilter"}},
    # Both mask email addresses in every line (shop/observability/logging.py).
    "formatters": {
        "plain": {
            "()": "shop.observability.logging.PlainFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {
            "()": "shop.observability.logging.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": True,
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["log_context"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        # django-ses logs whole SNS payloads (recipients' addresses) with its INFO lines.
        "django_ses": {"level": "WARNING"},
        # Celery gives this logger a plain handler of its own unless it has one already.
        "celery.task": {"handlers": ["console"], "propagate": False},
        # Django's own lines through the root handler only: its defaults add plain ones.
        "django": {"handlers": [], "propagate": True},
        "django.server": {"handlers": [], "propagate": True},
        # gunicorn's own lines (see shop/gunicorn_conf.py for its master process).
        "gunicorn.error": {"handlers": ["console"], "propagate": False},
        "gunicorn.access": {"handlers": ["console"], "propagate": False},
    },
}
# Client addresses or networks allowed to read /metrics (and the worker's metrics port)
# without a staff session: the client as shop.web.proxies finds it (X-Forwarded-For counts only
# from TRUSTED_PROXY_CIDRS).
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=default("METRICS_ALLOWED_IPS"))
for _network in METRICS_ALLOWED_IPS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"METRICS_ALLOWED_IPS: {_network!r} is not an IP address or network"
        ) from None
# prometheus_client's own variable, read by the library itself: set, counters of every
# process (gunicorn workers, Celery pool children) go to files there and a scrape sums them.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
# The Celery worker's own metrics HTTP port (0: off), served by its main process. In a
# container it must listen on all interfaces; METRICS_ALLOWED_IPS still decides who reads.
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=0)
WORKER_METRICS_ADDR = env.str("WORKER_METRICS_ADDR", default=default("WORKER_METRICS_ADDR"))

# --- Celery on SQS (see docs/celery-sqs.md) ---------------------------------------------
# Predefined queue only: the app never calls CreateQueue/ListQueues. Credentials come from the
# standard chain (environment or IAM role). The endpoint: AWS_ENDPOINT_URL_SQS, else
# AWS_ENDPOINT_URL, named in the broker URL (kombu's SQS transport builds its clients' endpoint
# from the URL's host and port, and the scheme from ``is_secure``); none: boto3's own default.
# A FIFO order queue (its URL ends in .fifo, and so must its DLQ's): kombu wants the name of
# a predefined FIFO queue to end in .fifo too. Messages then carry a MessageGroupId (the order)
# and a MessageDeduplicationId (shop.aws.sqs.envelope.fifo_fields).
ORDER_QUEUE_FIFO = ORDER_QUEUE_URL.endswith(".fifo")
ORDER_QUEUE_NAME = "orders.fifo" if ORDER_QUEUE_FIFO else "orders"
# Every email of an order (confirmation, shipped, cancelled): the message carries its id.
EMAIL_TASK_NAME = "notifications.send_email"
# The first version's task (an order id): still registered, for messages sent before.
CONFIRMATION_TASK_NAME = "notifications.send_order_confirmation"
# Seconds to wait before the 1st, 2nd, 3rd... redelivery of a failed confirmation.
CONFIRMATION_RETRY_DELAYS = [
    int(delay) for delay in env.list("CONFIRMATION_RETRY_DELAYS", default=["30", "120", "600"])
]
CELERY_BROKER_URL = f"sqs://{urlsplit(AWS_SQS_ENDPOINT_URL).netloc}"
# kombu's SQS transport and Celery's consumer, hardened so that poison messages are rejected
# into the dead-letter queue: never deleted, never fatal to the worker (see the module).
CELERY_BROKER_TRANSPORT = "shop.aws.sqs.transport:PoisonTolerantTransport"
CELERY_WORKER_CONSUMER = "shop.aws.sqs.transport:PoisonTolerantConsumer"
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "region": AWS_REGION,
    # kombu picks http/https from this option, not from the URL.
    "is_secure": not AWS_SQS_ENDPOINT_URL.startswith("http://"),
    # Long polling: SQS answers as soon as a message arrives, or after this many seconds.
    "wait_time_seconds": env.int("SQS_WAIT_TIME_SECONDS", default=20),
    "polling_interval": 0,
    "predefined_queues": {
        ORDER_QUEUE_NAME: {
            "url": ORDER_QUEUE_URL,
            # After the n-th failed receive the message stays invisible for delays[n-1] s.
            "backoff_policy": dict(enumerate(CONFIRMATION_RETRY_DELAYS, start=1)),
            "backoff_tasks": [EMAIL_TASK_NAME, CONFIRMATION_TASK_NAME],
        }
    },
    # Bounded calls: kombu's boto3 client (the worker's acknowledgements and visibility
    # changes; no web request publishes any more: the outbox relay does, with shop.aws's
    # client). Long polls go through kombu's own async client.
    "client-config": {
        "connect_timeout": 1,
        "read_timeout": 2,
        "retries": {"mode": "standard", "total_max_attempts": 1},
    },
}
# Each receive of a pass over the dead-letter queue (admin pages, dlq_* commands) long-polls
# this long: SQS's short polls sample only some of its servers and may answer empty while
# messages wait. It is also what the end of a pass costs. The emulator answers exactly: the
# tests use 0.
DLQ_RECEIVE_WAIT_SECONDS = env.int("DLQ_RECEIVE_WAIT_SECONDS", default=1)

# --- The outbox relay (shop/outbox/relay.py, `manage.py outbox_relay`) ---------------------
# Wait this long after a wake-up when more than one commit is pending: a fuller batch.
OUTBOX_LINGER_SECONDS = env.float("OUTBOX_LINGER_SECONDS", default=0.02)
# SQLite (no LISTEN/NOTIFY): the relay looks for new rows this often.
OUTBOX_POLL_SECONDS = env.float("OUTBOX_POLL_SECONDS", default=0.2)
# PostgreSQL: the longest wait for a NOTIFY before looking anyway (rows whose back-off ended).
OUTBOX_WAKE_SECONDS = env.float("OUTBOX_WAKE_SECONDS", default=1.0)
# A claimed row is the relay's for this long; longer than any publish call can take
# (botocore's 2 s connect and 10 s read, 3 attempts), or a second relay publishes it too.
OUTBOX_LEASE_SECONDS = env.float("OUTBOX_LEASE_SECONDS", default=60)
# A failed publish is tried again after base, 2 x base, 4 x base... at most max seconds.
OUTBOX_RETRY_BASE_SECONDS = env.float("OUTBOX_RETRY_BASE_SECONDS", default=1)
OUTBOX_RETRY_MAX_SECONDS = env.float("OUTBOX_RETRY_MAX_SECONDS", default=60)
# No publish retries: the shop publishes through the outbox relay (shop/outbox/relay.py),
# whose rows are the retry; Celery's own publish (tests, benchmarks) fails fast.
CELERY_TASK_PUBLISH_RETRY = False
CELERY_TASK_DEFAULT_QUEUE = ORDER_QUEUE_NAME
CELERY_TASK_CREATE_MISSING_QUEUES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_ACKS_ON_FAILURE = False
CELERY_TASK_ACKS_ON_TIMEOUT = False
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TASK_SEND_SENT_EVENT = False
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup closes the database connection after every task unless this is set
# (then after every 1000): a new PostgreSQL connection per email. Reuse follows
# DATABASE_CONN_MAX_AGE and health checks instead, as for web requests (notifications.tasks).
CELERY_DB_REUSE_MAX = 1000
# Must stay below the queue's VisibilityTimeout (docs/celery-sqs.md explains why).
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=20)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=25)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]

"""The Celery app, as in Celery's "First steps with Django"."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

app = Celery("shop")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Poison messages are rejected into SQS's dead-letter queue: never deleted, never fatal to
# the worker (notifications/consumer.py explains why stock Celery and kombu need this).
app.conf.broker_transport = "notifications.consumer:PoisonTolerantTransport"
app.conf.worker_consumer = "notifications.consumer:PoisonTolerantConsumer"
app.autodiscover_tasks()

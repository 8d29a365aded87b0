"""EXPLORATION (temporary)."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid

import pytest
from django.conf import settings

from shop.celery import app
from tests.notifications.test_pipeline import queues, workers  # noqa: F401
from tests.pipeline import drain, queue_counts, sqs

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
DLQ_URL = os.environ["TEST_DLQ_URL"]


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_capture(queues):
    app.send_task("no.such.task", kwargs={"order_id": 1}, queue="orders")
    m = sqs().receive_message(QueueUrl=settings.ORDER_QUEUE_URL, WaitTimeSeconds=1)["Messages"][0]
    print("RAW", m["Body"])
    env = json.loads(base64.b64decode(m["Body"]))
    print("ENV", json.dumps(env, indent=1))
    print("BODY", base64.b64decode(env["body"]))
    drain(settings.ORDER_QUEUE_URL)


def envelope(body: str, *, headers: dict, content_type="application/json") -> str:
    return b64(json.dumps({
        "body": b64(body),
        "content-encoding": "utf-8",
        "content-type": content_type,
        "headers": headers,
        "properties": {
            "body_encoding": "base64",
            "delivery_info": {"exchange": "", "routing_key": "orders"},
            "delivery_mode": 2,
            "delivery_tag": str(uuid.uuid4()),
            "priority": 0,
        },
    }))


def task_headers(name, id_=None):
    id_ = id_ or str(uuid.uuid4())
    return {"lang": "py", "task": name, "id": id_, "root_id": id_, "parent_id": None,
            "group": None, "retries": 0, "eta": None, "expires": None,
            "timelimit": [None, None], "argsrepr": "()", "kwargsrepr": "{}", "origin": "test",
            "ignore_result": True}


CASES = {
    "a_hello": "hello",
    "b_b64_nonjson": b64("this is not json"),
    "c1_json": '{"foo": 1}',
    "c2_b64json": b64('{"foo": 1}'),
    "c3_list": "[1, 2, 3]",
    "d_unknown": envelope(json.dumps([[], {"order_id": 1}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]), headers=task_headers("notifications.no_such_task")),
    "e_missing": envelope(json.dumps([[], {"order_id": 999999}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]), headers=task_headers(settings.CONFIRMATION_TASK_NAME)),
    "f_env_garbage_noheader": envelope("garbage{", headers={}),
    "g_known_task_garbage": envelope("garbage{", headers=task_headers(settings.CONFIRMATION_TASK_NAME)),
    "h_known_task_badshape": envelope(json.dumps({"x": 1}), headers=task_headers(settings.CONFIRMATION_TASK_NAME)),
    "i_pickle": envelope("garbage", headers={}, content_type="application/x-python-serialize"),
    "j_known_task_pickle": envelope("garbage", headers=task_headers(settings.CONFIRMATION_TASK_NAME), content_type="application/x-python-serialize"),
    "k_known_task_wrongargs": envelope(json.dumps([[], {"nope": 1}, {}]), headers=task_headers(settings.CONFIRMATION_TASK_NAME)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_explore(case, workers, tmp_path):
    worker = workers()
    body = CASES[case]
    sqs().send_message(QueueUrl=settings.ORDER_QUEUE_URL, MessageBody=body)
    t0 = time.monotonic()
    seen = []
    while time.monotonic() - t0 < 40:
        q = queue_counts(settings.ORDER_QUEUE_URL)
        d = queue_counts(DLQ_URL)
        seen.append((round(time.monotonic() - t0, 1), q, d))
        if d[0] + d[1] > 0:
            break
        time.sleep(1)
    worker_text = worker.text()
    with open(f"/tmp/poison/{case}.txt", "w") as f:
        f.write(f"BODY {body}\n")
        for s in seen:
            f.write(f"{s}\n")
        f.write(worker_text)

"""GET /api/schema/ is answered from a schema built once per process."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator as StockGenerator

from shop.web.api import SchemaGenerator

pytestmark = pytest.mark.django_db


def test_the_schema_is_built_once_per_process_and_is_drf_spectaculars(api_client):
    SchemaGenerator.forget()
    builds = SchemaGenerator.builds
    answers = [api_client.get("/api/schema/", {"format": fmt}) for fmt in ("json", "yaml", "json")]
    answers.append(api_client.get("/api/schema/"))  # YAML, the default
    assert [a.status_code for a in answers] == [200] * 4
    assert SchemaGenerator.builds == builds + 1
    # The same document drf-spectacular's own generator builds for the request.
    stock = StockGenerator().get_schema(request=None, public=True)
    assert json.loads(answers[0].content) == json.loads(json.dumps(stock))
    assert answers[0].content == answers[2].content


def test_another_urlconf_or_changed_settings_build_anew(api_client):
    SchemaGenerator.forget()
    builds = SchemaGenerator.builds
    api_client.get("/api/schema/", {"format": "json"})
    with override_settings(SPECTACULAR_SETTINGS={"TITLE": "Changed"}):
        api_client.get("/api/schema/", {"format": "json"})
    assert SchemaGenerator.builds == builds + 2

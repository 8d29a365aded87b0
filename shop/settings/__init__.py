"""The shop's settings, one module per environment (cookiecutter-django's layout).

- ``shop.settings.production``: the default of ``manage.py``, ``shop.wsgi`` and ``shop.celery``
  (fail closed: a process started without configuration is a production process, and refuses
  to start until the required variables are set).
- ``shop.settings.development``: ``make run`` and the benchmarks (``DJANGO_SETTINGS_MODULE``).
- ``shop.settings.test``: the test suite (pyproject.toml), development's plus test-only values.

``shop.settings.base`` holds what they share; every value comes from the environment.
"""

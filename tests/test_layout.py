"""Where test code lives: rows from tests/factories.py, shared helpers in plain modules
(tests/helpers.py, tests/pipeline.py, ...), fixtures and hooks in conftest.py files. So no
module of tests/ imports a conftest.py or a test module: a helper that two test modules need
moves to a helper module, a fixture to the nearest conftest.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(TESTS.parent).with_suffix("").parts)


def _is_forbidden(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return last == "conftest" or last.startswith("test_")


def forbidden_imports(source: str, module: str) -> list[str]:
    """The conftest and test modules that ``source`` (the module named ``module``) imports,
    anywhere in it (inside functions too), relative imports resolved."""
    package = module.rsplit(".", 1)[0]
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _is_forbidden(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, *([base] if base else [])])
            if _is_forbidden(base):
                found.append(base)
            # ``from tests.notifications import test_ses_events``: a module, not a name.
            found += [f"{base}.{a.name}" for a in node.names if _is_forbidden(a.name)]
    return found


def _is_fixture(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return ast.unparse(target) in {"pytest.fixture", "fixture"}


def helpers_in_conftest(source: str) -> list[str]:
    """Public top-level functions of a conftest.py that are neither fixtures nor hooks."""
    return [
        node.name
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and not node.name.startswith(("_", "pytest_"))
        and not any(_is_fixture(d) for d in node.decorator_list)
    ]


def test_no_module_of_tests_imports_a_conftest_or_a_test_module():
    offenders = {
        str(path.relative_to(TESTS.parent)): imports
        for path in sorted(TESTS.rglob("*.py"))
        if (imports := forbidden_imports(path.read_text(), _module_name(path)))
    }
    assert offenders == {}


def test_conftest_files_hold_fixtures_and_hooks_only():
    offenders = {
        str(path.relative_to(TESTS.parent)): names
        for path in sorted(TESTS.rglob("conftest.py"))
        if (names := helpers_in_conftest(path.read_text()))
    }
    assert offenders == {}


def test_the_checks_see_every_form_of_the_imports_they_forbid():
    module = "tests.shop.test_example"
    for source in (
        "from tests.conftest import make_product",
        "from tests.notifications.test_fifo import fifo_queues",
        "from tests.notifications import test_ses_events as ses_events",
        "import tests.shop.test_metrics",
        "from . import test_metrics",
        "from .test_metrics import scrape",
        "from .. import conftest",
        "def test_x():\n    from tests.shop.test_metrics import scrape\n",
    ):
        assert forbidden_imports(source, module), source
    assert forbidden_imports("from .test_metrics import scrape", module) == [
        "tests.shop.test_metrics"
    ]
    assert forbidden_imports("from .. import conftest", module) == ["tests.conftest"]
    for source in (
        "from tests.factories import ProductFactory",
        "from tests.helpers import auth, order_body",
        "from tests.notifications.loopback_sns import sign",
        "from .helpers import auth",
        "import pytest",
    ):
        assert forbidden_imports(source, module) == [], source

    conftest = (
        "import pytest\n"
        "@pytest.fixture\ndef queues(): ...\n"
        "@pytest.fixture(scope='session')\ndef key(): ...\n"
        "def pytest_terminal_summary(terminalreporter): ...\n"
        "def _audit(event, args): ...\n"
        "def make_product(**fields): ...\n"
    )
    assert helpers_in_conftest(conftest) == ["make_product"]

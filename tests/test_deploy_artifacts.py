"""The production image and the CloudFormation template, checked without Docker or AWS.

No Docker engine runs here, so the image is checked by what it is made of: the Dockerfile's
instructions, the build context that ``.dockerignore`` selects (copied to a temporary
directory, where the Dockerfile's collectstatic step runs), and the image's commands run
from that copy with the image's environment, exactly as docs/deployment.md's "Docker" section
gives them.

The template ``infra/shop.yaml`` is deployed to the session's emulator with CloudFormation.
The emulator does not implement every resource type of the template (``EMULATOR_SKIPS``):
those resources are checked in the template itself, loaded with cfn-lint's own YAML loader.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from django.apps import apps
from django.conf import settings
from django.test import Client, override_settings

from shop import aws
from shop.web.middleware import HEALTH_PATH
from tests.pipeline import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "shop.yaml"
BIN = Path(sys.executable).parent
#: Resource types of the template that the emulator's CloudFormation skips (it warns and
#: creates nothing): ``test_what_the_emulator_skips_is_right_in_the_template`` covers them.
EMULATOR_SKIPS = {
    "AWS::CloudWatch::Alarm",
    "AWS::SES::ConfigurationSet",
    "AWS::SES::ConfigurationSetEventDestination",
    "AWS::SNS::TopicPolicy",
    "AWS::SNS::Subscription",
}


# --- the Dockerfile ---------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        assert self.args.startswith("["), f"{self.keyword} is not in exec (JSON) form"
        return json.loads(self.args)


def dockerfile(path: Path = ROOT / "Dockerfile") -> list[Instruction]:
    """The instructions, continuation lines joined and comments dropped (as Docker does)."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        instructions.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends in a continuation line"
    return instructions


def only(keyword: str) -> Instruction:
    found = [i for i in dockerfile() if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


def image_env() -> dict[str, str]:
    """The environment the Dockerfile's ENV instructions give every process of the image."""
    env: dict[str, str] = {}
    for instruction in dockerfile():
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.args):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def default_command() -> list[str]:
    return only("CMD").exec_form()


def healthcheck_command() -> list[str]:
    options, _, command = only("HEALTHCHECK").args.partition("CMD ")
    assert "--interval" in options
    return json.loads(command)


def healthcheck_url() -> tuple[int, str]:
    """(port, path) the HEALTHCHECK probes."""
    match = re.search(r"http://127\.0\.0\.1:(\d+)(/[^'\"]*)", " ".join(healthcheck_command()))
    assert match, "the HEALTHCHECK probes no loopback URL"
    return int(match[1]), match[2]


def run_instructions() -> list[str]:
    return [i.args for i in dockerfile() if i.keyword == "RUN"]


# --- .dockerignore: the build context -----------------------------------------------------


def _glob_regex(pattern: str) -> str:
    """Docker's pattern syntax (Go's filepath.Match plus ``**``) as a regular expression."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def _dockerignore_rules() -> list[tuple[bool, str, re.Pattern]]:
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        rules.append((negated, pattern, re.compile(_glob_regex(pattern))))
    return rules


def dockerignored(path: str) -> bool:
    """Whether ``docker build`` leaves this path (relative, with /) out of the context.

    As Docker: the last matching rule wins, and a rule matching a directory matches what is
    in it.
    """
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for negated, _, regex in _dockerignore_rules():
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def build_context(destination: Path) -> list[str]:
    """Copy what ``docker build .`` would send into ``destination``; return the paths."""
    rules = _dockerignore_rules()
    copied = []
    for directory, subdirectories, files in os.walk(ROOT):
        relative_dir = Path(directory).relative_to(ROOT).as_posix()
        prefix = "" if relative_dir == "." else f"{relative_dir}/"
        # Skip whole directories nothing inside can be re-included from (.git, .venv, ...).
        subdirectories[:] = [
            name
            for name in subdirectories
            if not dockerignored(f"{prefix}{name}")
            or any(negated and p.startswith(f"{prefix}{name}/") for negated, p, _ in rules)
        ]
        for name in files:
            path = f"{prefix}{name}"
            if not dockerignored(path):
                target = destination / path
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / path, target)
                copied.append(path)
    return copied


# --- docs/deployment.md's "Docker" section -----------------------------------------------------


def docs_docker_section() -> str:
    text = (ROOT / "docs" / "deployment.md").read_text()
    start = text.index("\n## Docker\n")
    end = re.search(r"\n##+ ", text[start + 1 :])
    return text[start : start + 1 + end.start()] if end else text[start:]


#: docker options that take a value (the others used in the docs are flags).
_DOCKER_VALUE_OPTIONS = {"--env-file", "-e", "--env", "-p", "--publish", "--name", "-t", "--tag"}


@dataclass(frozen=True)
class DockerRun:
    options: dict[str, list[str]]
    image: str
    command: list[str]


def docs_docker_lines() -> tuple[list[str], list[DockerRun]]:
    block = re.search(r"```sh\n(.*?)```", docs_docker_section(), re.S)
    assert block, "docs/deployment.md's Docker section has no sh block"
    build: list[str] = []
    runs: list[DockerRun] = []
    for line in block[1].splitlines():
        words = shlex.split(line, comments=True)
        if words[:2] == ["docker", "build"]:
            build = words[2:]
        elif words[:2] == ["docker", "run"]:
            options: dict[str, list[str]] = {}
            rest = words[2:]
            while rest[0].startswith("-"):
                option = rest.pop(0)
                options.setdefault(option, []).append(
                    rest.pop(0) if option in _DOCKER_VALUE_OPTIONS else ""
                )
            runs.append(DockerRun(options, rest[0], rest[1:]))
    return build, runs


def service(run: DockerRun) -> str:
    """The SHOP_SERVICE a documented ``docker run`` line sets."""
    (value,) = [
        e.split("=", 1)[1] for e in run.options.get("-e", []) if e.startswith("SHOP_SERVICE=")
    ]
    return value


def docs_run(*prefix: str) -> DockerRun:
    found = [run for run in docs_docker_lines()[1] if run.command[: len(prefix)] == list(prefix)]
    assert len(found) == 1, f"docs/deployment.md, Docker: {len(found)} `docker run` of {prefix}"
    return found[0]


# --- the image's processes, run from a copy of the build context -------------------------------


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> Path:
    """The build context with the Dockerfile's build steps after dependencies run in it."""
    path = tmp_path_factory.mktemp("image") / "app"
    path.mkdir()
    build_context(path)
    (collectstatic,) = [run for run in run_instructions() if "collectstatic" in run]
    result = subprocess.run(
        ["/bin/sh", "-c", collectstatic],
        cwd=path,
        env={"PATH": f"{BIN}:/usr/bin:/bin", **image_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return path


def container_env(context: Path, **overrides: str) -> dict[str, str]:
    """The image's ENV plus what ``--env-file prod.env`` gives on AWS; AWS is the emulator."""
    return {
        "PATH": f"{BIN}:/usr/bin:/bin",
        **image_env(),
        "DJANGO_SECRET_KEY": "test-" + uuid.uuid4().hex,
        "DJANGO_ALLOWED_HOSTS": "shop.example.com",
        # The load balancer in front, whose X-Forwarded-Proto is believed: here, the test.
        "TRUSTED_PROXY_CIDRS": "127.0.0.1/32",
        "DATABASE_URL": f"sqlite:///{context.parent / 'db.sqlite3'}",
        "ORDER_QUEUE_URL": settings.ORDER_QUEUE_URL,
        "COGNITO_USER_POOL_ID": settings.COGNITO_USER_POOL_ID,
        "COGNITO_APP_CLIENT_ID": settings.COGNITO_APP_CLIENT_ID,
        "AWS_ENDPOINT_URL": settings.AWS_ENDPOINT_URL,
        "AWS_REGION": settings.AWS_REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        **overrides,
    }


def executable(command: list[str]) -> list[str]:
    """The image's command with its program taken from this virtualenv (the image's PATH)."""
    return [str(BIN / command[0]), *command[1:]]


def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    return process.returncode


# --- the template, deployed to the emulator -------------------------------------------------


def stack_deploy(name: str, **parameters: str) -> dict[str, str]:
    cfn = aws.client("cloudformation")
    cfn.create_stack(
        StackName=name,
        TemplateBody=TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    stack = wait_for(
        lambda: next(
            (
                s
                for s in cfn.describe_stacks(StackName=name)["Stacks"]
                if not s["StackStatus"].endswith("IN_PROGRESS")
            ),
            None,
        ),
        timeout=60,
        what=f"stack {name}",
    )
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


@dataclass
class Stack:
    name: str
    queue_name: str
    outputs: dict[str, str]

    def physical_id(self, logical_id: str) -> str:
        resources = aws.client("cloudformation").list_stack_resources(StackName=self.name)
        (found,) = [
            r["PhysicalResourceId"]
            for r in resources["StackResourceSummaries"]
            if r["LogicalResourceId"] == logical_id
        ]
        return found

    def queue_url(self, name: str) -> str:
        """The queue's URL on the emulator (the stack's output names AWS's host)."""
        return aws.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]


@pytest.fixture(scope="module")
def deployed():
    """Deploy infra/shop.yaml; remove the stacks afterwards."""
    names: list[str] = []

    def deploy(**parameters: str) -> Stack:
        tag = uuid.uuid4().hex[:8]
        name, queue_name = f"shop-test-{tag}", f"deploy-{tag}"
        names.append(name)
        return Stack(name, queue_name, stack_deploy(name, QueueName=queue_name, **parameters))

    yield deploy
    for name in names:
        _stack_delete(name)


@pytest.fixture(scope="module")
def default_stack(deployed) -> Stack:
    return deployed()


def queue_attributes(url: str) -> dict[str, str]:
    return aws.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])[
        "Attributes"
    ]


def policy_statements(arn: str) -> list[dict]:
    iam = aws.client("iam")
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
    if isinstance(document, str):
        document = json.loads(document)
    return document["Statement"]


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def grants(arn: str) -> set[tuple[str, str]]:
    """Every (action, resource) pair the policy allows; nothing may be denied or wildcarded."""
    pairs = set()
    for statement in policy_statements(arn):
        assert statement["Effect"] == "Allow"
        for action in _listed(statement["Action"]):
            assert "*" not in action, f"wildcard action {action}"
            pairs.update((action, resource) for resource in _listed(statement["Resource"]))
    return pairs


def account_arn(service: str, resource: str, region: str = "us-east-1") -> str:
    return f"arn:aws:{service}:{region}:123456789012:{resource}"


def redrive_policy(attributes: dict[str, str]) -> dict:
    return json.loads(attributes["RedrivePolicy"])


def env_example_default(name: str) -> str:
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{name} not in .env.example")


# === tests: the Dockerfile ====================================================================


def test_image_is_slim_pinned_and_runs_as_an_unprivileged_user():
    (base,) = [i.args for i in dockerfile() if i.keyword == "FROM"]
    assert base == "python:3.11-slim-bookworm"
    instructions = dockerfile()
    keywords = [i.keyword for i in instructions]
    user = only("USER").args
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert any(f"--uid {uid}" in run and "useradd" in run for run in run_instructions())
    # Nothing is built as that user, and it runs everything that follows.
    assert keywords.index("USER") > max(
        n for n, k in enumerate(keywords) if k in ("RUN", "COPY", "ADD")
    )
    assert keywords.index("USER") < keywords.index("CMD")
    env = image_env()
    assert env["DJANGO_SETTINGS_MODULE"] == "shop.settings.production"
    assert not [name for name in env if re.search("SECRET|PASSWORD|ACCESS_KEY|TOKEN", name)]


def lock_pins(path: Path) -> dict[str, str]:
    """{name: version} of a pip-compile lock, each pin checked to carry hashes."""
    pins = {}
    for entry in re.split(r"\n(?=\S)", path.read_text()):
        if entry.startswith("#") or not entry.strip():
            continue
        name, _, version = entry.split()[0].partition("==")
        assert version, f"{path.name}: {entry.split()[0]} is not an exact pin"
        assert "--hash=sha256:" in entry, f"{path.name}: {name} has no hash"
        pins[name] = version
    return pins


def test_dependencies_are_installed_from_the_lock_with_hashes_in_their_own_layer():
    instructions = dockerfile()
    copy_lock = instructions.index(Instruction("COPY", "requirements.lock ."))
    (pip,) = [
        n for n, i in enumerate(instructions) if i.keyword == "RUN" and "pip install" in i.args
    ]
    copy_all = instructions.index(Instruction("COPY", ". ."))
    # The dependency layer depends on the lock only: the code is copied after it.
    assert copy_lock < pip < copy_all
    words = shlex.split(instructions[pip].args)
    assert words[:2] == ["pip", "install"]
    packages = [w for n, w in enumerate(words[2:]) if not w.startswith("-")]
    assert packages == ["requirements.lock"] and "-r" in words and "--no-cache-dir" in words
    assert "--require-hashes" in words
    # Every package pinned with hashes, and the image gets what the tests run against.
    pins = lock_pins(ROOT / "requirements.lock")
    assert {"django", "celery", "kombu", "botocore", "urllib3", "cffi"} <= set(pins)
    for name, version in pins.items():
        assert metadata.version(name) == version, f"{name}: {version} locked"


def test_build_context_holds_the_app_and_no_secrets_or_local_state():
    for path in (".env", "prod.env", ".env.example", "db.sqlite3", "staticfiles/admin/x.css"):
        assert dockerignored(path), path
    for path in (".venv/bin/python", ".git/HEAD", "var/test-moto.log", "tests/conftest.py"):
        assert dockerignored(path), path
    assert dockerignored("shop/__pycache__/settings.cpython-311.pyc")
    # What the processes load: manage.py, every local app, the templates, the static sources.
    needed = ["manage.py", "requirements.lock", f"{settings.ROOT_URLCONF.replace('.', '/')}.py"]
    for app in apps.get_app_configs():
        source = Path(app.path).resolve()
        if source.is_relative_to(ROOT) and not source.is_relative_to(Path(sys.prefix).resolve()):
            needed += [p.relative_to(ROOT).as_posix() for p in source.rglob("*.py")]
    for directory in [*settings.TEMPLATES[0]["DIRS"], *getattr(settings, "STATICFILES_DIRS", [])]:
        needed += [
            p.relative_to(ROOT).as_posix() for p in Path(directory).rglob("*") if p.is_file()
        ]
    assert not [path for path in needed if dockerignored(path)]


def test_documented_docker_lines_are_the_image_commands():
    build, runs = docs_docker_lines()
    assert build[:2] == ["-t", "shop"] and build[2:] == ["."]  # ./Dockerfile, this context
    assert {run.image for run in runs} == {"shop"}
    # The web server is the image's default command, which the docs state word for word; it
    # runs twice, as the public API and as the admin (SHOP_SERVICE).
    webs = [run for run in runs if not run.command]
    assert sorted(service(run) for run in webs) == ["admin", "api"]
    (stated,) = re.findall(r"`(gunicorn [^`]+)`", docs_docker_section())
    assert shlex.split(stated) == default_command()
    assert default_command()[:2] == ["gunicorn", settings.WSGI_APPLICATION.rsplit(".", 1)[0]]
    port, _ = healthcheck_url()
    assert only("EXPOSE").args == str(port)
    assert f"0.0.0.0:{port}" in default_command()
    for web in webs:
        (published,) = web.options["-p"]
        assert published.endswith(f":{port}"), published
        assert "--no-healthcheck" not in web.options
    # The other processes: worker, relay, migrate. None serves HTTP, so none is health-checked.
    worker = docs_run("celery", "-A", "shop", "worker")
    relay = docs_run("python", "manage.py", "outbox_relay")
    migrate = docs_run("python", "manage.py", "migrate")
    for run in (worker, relay, migrate):
        assert "--no-healthcheck" in run.options, run.command
    assert len(runs) == 5


@pytest.mark.django_db
def test_healthcheck_path_is_answered_for_the_probe_as_docker_sends_it():
    port, path = healthcheck_url()
    assert path == HEALTH_PATH
    # Production's host list and HTTPS redirect; the probe comes over plain HTTP by IP.
    with override_settings(ALLOWED_HOSTS=["shop.example.com"], SECURE_SSL_REDIRECT=True):
        response = Client().get(path, HTTP_HOST=f"127.0.0.1:{port}")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


# === tests: the image's commands, run from its build context ==================================


@pytest.mark.subprocess
def test_default_command_serves_health_and_static_files(context):
    port = free_port()
    command = executable(default_command())
    command[command.index(f"0.0.0.0:{healthcheck_url()[0]}")] = f"127.0.0.1:{port}"
    log = context.parent / "web.log"
    process = subprocess.Popen(
        command,
        cwd=context,
        env=container_env(context),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # The HEALTHCHECK's own command, pointed at this server's port.
        probe = [
            sys.executable if word == "python" else word.replace(":8000/", f":{port}/")
            for word in healthcheck_command()
        ]
        wait_for(
            lambda: subprocess.run(probe, capture_output=True, timeout=10).returncode == 0,
            timeout=60,
            what=f"the HEALTHCHECK to pass ({log})",
            every=0.5,
        )
        # A hashed static file, served by whitenoise with DEBUG off.
        manifest = json.loads((context / "staticfiles" / "staticfiles.json").read_text())
        hashed = manifest["paths"]["admin/css/base.css"]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/{settings.STATIC_URL.strip('/')}/{hashed}",
            headers={"Host": "shop.example.com", "X-Forwarded-Proto": "https"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert b"body" in response.read()
            assert "immutable" in response.headers["Cache-Control"]
        # DEBUG is off in the image: plain HTTP is redirected to HTTPS.
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/products/", headers={"Host": "shop.example.com"}
        )
        with pytest.raises(urllib.error.HTTPError) as redirect:
            urllib.request.build_opener(_NoRedirect).open(request, timeout=10)
        assert redirect.value.code == 301
        assert redirect.value.headers["Location"].startswith("https://shop.example.com/")
    finally:
        assert stop(process) == 0, log.read_text()
    assert "Booting worker" in log.read_text()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.mark.subprocess
def test_the_public_api_and_the_admin_run_as_separate_services_of_the_image(context):
    """The documented two web lines: the same default command, SHOP_SERVICE apart. The public API
    has no admin and reads no queue (its role may not); the admin has no API."""
    env = container_env(context, METRICS_ALLOWED_IPS="127.0.0.1")
    migrate = subprocess.run(
        executable(docs_run("python", "manage.py", "migrate").command),
        cwd=context, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr
    servers: dict[str, tuple[subprocess.Popen, int]] = {}
    try:
        for run in [r for r in docs_docker_lines()[1] if not r.command]:
            port = free_port()
            command = executable(default_command())
            command[command.index(f"0.0.0.0:{healthcheck_url()[0]}")] = f"127.0.0.1:{port}"
            extra = dict(e.split("=", 1) for e in run.options.get("-e", []))
            process = subprocess.Popen(
                command,
                cwd=context,
                env={**env, **extra},
                stdout=(context.parent / f"{service(run)}.log").open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            servers[service(run)] = (process, port)

        def get(name: str, path: str) -> tuple[int, str]:
            request = urllib.request.Request(
                f"http://127.0.0.1:{servers[name][1]}{path}",
                headers={"Host": "shop.example.com", "X-Forwarded-Proto": "https"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as error:
                return error.code, ""
            except OSError:
                return 0, ""

        for name in servers:
            wait_for(lambda name=name: get(name, HEALTH_PATH)[0] == 200, timeout=60,
                     what=f"the {name} service")  # fmt: skip
        assert get("api", "/api/products/")[0] == 200
        assert get("api", "/admin/login/")[0] == 404
        assert get("admin", "/admin/login/")[0] == 200
        assert get("admin", "/api/products/")[0] == 404
        assert get("admin", "/ses/events/")[0] == 404
        api_metrics, admin_metrics = get("api", "/metrics"), get("admin", "/metrics")
        assert api_metrics[0] == admin_metrics[0] == 200
        assert "shop_orders_placed_total" in api_metrics[1]
        assert "shop_sqs_messages" not in api_metrics[1]  # no queue reads in the API service
        assert (
            'shop_sqs_messages{queue="' in admin_metrics[1]
            and "shop_sqs_up 1.0" in (admin_metrics[1])
        )
    finally:
        for process, _ in servers.values():
            assert stop(process) == 0


@pytest.mark.subprocess
def test_migrate_and_relay_commands_run_in_the_image(context):
    env = container_env(context)
    relay = docs_run("python", "manage.py", "outbox_relay").command
    for command, expected in (
        (docs_run("python", "manage.py", "migrate").command, r"Apply|No migrations to apply"),
        # The relay's own command, one pass (it runs until SIGTERM otherwise).
        ([*relay, "--once"], r"outbox: 0 published \(none\), 0 failed"),
        # The old sweep's schedule still works: one pass too.
        (["python", "manage.py", "confirmation_sweep", "--older-than", "600"], r"outbox: 0 "),
    ):
        result = subprocess.run(
            executable(command), cwd=context, env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert re.search(expected, result.stdout), result.stdout
    # The help of the relay, as an operator would read it.
    result = subprocess.run(
        executable(["python", "manage.py", "help", "outbox_relay"]),
        cwd=context, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0 and "--once" in result.stdout and "SIGTERM" in result.stdout


@pytest.mark.subprocess
def test_worker_command_consumes_the_templates_queue_and_leaves_poison_to_sqs(
    context, default_stack
):
    """The documented worker command on the deployed order queue: it runs, and because the queue has
    the template's redrive policy, a message it cannot run stays for SQS to dead-letter."""
    queue_url = default_stack.queue_url(default_stack.queue_name)
    run = docs_run("celery", "-A", "shop", "worker")
    log = context.parent / "worker.log"
    process = subprocess.Popen(
        # One pool child is enough here (the default is one per CPU).
        [*executable(run.command), "--concurrency", "1"],
        cwd=context,
        env=container_env(context, ORDER_QUEUE_URL=queue_url, SQS_WAIT_TIME_SECONDS="1"),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: "ready." in log.read_text(), timeout=60, what=f"worker ready ({log})")
        message_id = aws.client("sqs").send_message(
            QueueUrl=queue_url, MessageBody=f"not a task {uuid.uuid4()}"
        )["MessageId"]
        wait_for(
            lambda: re.search(
                rf"poison message id={message_id} attempt=1 .*outcome=rejected", log.read_text()
            ),
            timeout=30,
            what=f"the worker to reject the message ({log})",
        )
    finally:
        assert stop(process) == 0, log.read_text()
    attributes = queue_attributes(queue_url)
    left = int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )
    assert left == 1, "the rejected message was deleted instead of left for the DLQ"


# === tests: the CloudFormation template ========================================================


def test_template_deploys_with_its_defaults(default_stack):
    outputs = default_stack.outputs
    assert set(outputs) == {
        "OrderQueueUrl",
        "OrderQueueArn",
        "DeadLetterQueueUrl",
        "DeadLetterQueueArn",
        "SesConfigurationSetName",
        "SesEventsTopicArn",
        "RelayPolicyArn",
        "AdminPolicyArn",
        "WorkerPolicyArn",
    }
    name = default_stack.queue_name
    assert outputs["OrderQueueUrl"].endswith(f"/123456789012/{name}")
    assert outputs["DeadLetterQueueUrl"].endswith(f"/123456789012/{name}-dlq")
    assert outputs["SesConfigurationSetName"] == "shop"

    orders = queue_attributes(default_stack.queue_url(name))
    dlq = queue_attributes(default_stack.queue_url(f"{name}-dlq"))
    assert redrive_policy(orders) == {
        "deadLetterTargetArn": outputs["DeadLetterQueueArn"],
        "maxReceiveCount": 3,
    }
    assert dlq["QueueArn"] == outputs["DeadLetterQueueArn"]
    assert orders["QueueArn"] == outputs["OrderQueueArn"]
    assert int(orders["VisibilityTimeout"]) == 30
    # Above the task's hard time limit: no second worker gets a message still being sent.
    assert int(orders["VisibilityTimeout"]) > int(env_example_default("CELERY_TASK_TIME_LIMIT"))
    assert orders["ReceiveMessageWaitTimeSeconds"] == "20"
    assert dlq["MessageRetentionPeriod"] == str(14 * 24 * 3600)
    assert orders["SqsManagedSseEnabled"] == dlq["SqsManagedSseEnabled"] == "true"
    topic = aws.client("sns").get_topic_attributes(TopicArn=outputs["SesEventsTopicArn"])
    assert topic["Attributes"]["TopicArn"] == outputs["SesEventsTopicArn"]


def test_policies_grant_exactly_what_the_processes_call(default_stack):
    outputs = default_stack.outputs
    orders, dlq = outputs["OrderQueueArn"], outputs["DeadLetterQueueArn"]
    # The public API has no policy (its orders go to the outbox). The outbox relay publishes
    # confirmation tasks, and nothing else: no DLQ, no queue reads.
    assert grants(outputs["RelayPolicyArn"]) == {("sqs:SendMessage", orders)}
    # The admin: queue health, the DLQ pages and their redrive/delete, ses_verify.
    assert grants(outputs["AdminPolicyArn"]) == {
        ("sqs:SendMessage", orders),
        ("sqs:GetQueueAttributes", orders),
        ("sqs:GetQueueAttributes", dlq),
        ("sqs:ReceiveMessage", dlq),
        ("sqs:DeleteMessage", dlq),
        ("sqs:ChangeMessageVisibility", dlq),
        ("sqs:StartMessageMoveTask", dlq),
        ("ses:VerifyEmailIdentity", "*"),
    }
    # In the SES sandbox (the default) recipients are identities too: identity/*.
    assert grants(outputs["WorkerPolicyArn"]) == {
        ("sqs:ReceiveMessage", orders),
        ("sqs:DeleteMessage", orders),
        ("sqs:ChangeMessageVisibility", orders),
        ("sqs:GetQueueAttributes", orders),
        ("ses:SendRawEmail", account_arn("ses", "identity/*")),
        ("ses:SendRawEmail", account_arn("ses", "configuration-set/shop")),
        ("ses:GetIdentityVerificationAttributes", "*"),
        ("ses:GetAccount", "*"),
        ("ses:GetSendQuota", "*"),
    }
    (send,) = [
        s
        for s in policy_statements(outputs["WorkerPolicyArn"])
        if s["Action"] == "ses:SendRawEmail"
    ]
    assert send["Condition"] == {"StringEquals": {"ses:FromAddress": "shop@example.com"}}


def test_template_fifo_queues():
    tag = uuid.uuid4().hex[:8]
    name, queue_name = f"shop-test-{tag}", f"deploy-{tag}"
    outputs = stack_deploy(name, QueueName=queue_name, FifoQueues="true")
    sqs = aws.client("sqs")
    urls = [sqs.get_queue_url(QueueName=f"{queue_name}{end}")["QueueUrl"] for end in
            (".fifo", "-dlq.fifo")]  # fmt: skip
    try:
        orders, dead = (queue_attributes(url) for url in urls)
        assert orders["FifoQueue"] == dead["FifoQueue"] == "true"
        assert json.loads(orders["RedrivePolicy"])["deadLetterTargetArn"] == dead["QueueArn"]
        assert outputs["OrderQueueUrl"].endswith(f"/{queue_name}.fifo")
    finally:
        _stack_delete(name)


def _stack_delete(name: str) -> None:
    """Clean-up only (every stack's names are its own): moto 5.2.5's DeleteStack sometimes
    answers NonExistentQueue for this template's stacks since the queue names are Fn::If
    (seen in two of four runs of this module, not reproduced against a lone emulator)."""
    with contextlib.suppress(ClientError):
        aws.client("cloudformation").delete_stack(StackName=name)


def test_template_options_topic_roles_sender_and_receive_count(deployed):
    stack = deployed(
        MaxReceiveCount="5",
        CreateOrderEventsTopic="true",
        TrustedServicePrincipal="ecs-tasks.amazonaws.com",
        SesSandbox="false",
        SenderEmail="orders@example.com",
        SenderIdentity="example.com",
        SesConfigurationSetName="shop-test",
        SesEventsWebhookUrl="https://127.0.0.1/ses/events/",
        AlarmEmail="ops@example.com",
    )
    outputs = stack.outputs
    assert {
        "OrderEventsTopicArn",
        "OrderEventsPublisherPolicyArn",
        "ApiRoleArn",
        "RelayRoleArn",
        "AdminRoleArn",
        "WorkerRoleArn",
    } <= set(outputs)
    assert (
        redrive_policy(queue_attributes(stack.queue_url(stack.queue_name)))["maxReceiveCount"] == 5
    )
    sns = aws.client("sns")
    topic = outputs["OrderEventsTopicArn"]
    assert sns.get_topic_attributes(TopicArn=topic)["Attributes"]["KmsMasterKeyId"]
    assert grants(outputs["OrderEventsPublisherPolicyArn"]) == {("sns:Publish", topic)}
    # Out of the sandbox: the sender's (domain) identity only, and the chosen configuration set.
    worker_ses = {g for g in grants(outputs["WorkerPolicyArn"]) if g[0] == "ses:SendRawEmail"}
    assert worker_ses == {
        ("ses:SendRawEmail", account_arn("ses", "identity/example.com")),
        ("ses:SendRawEmail", account_arn("ses", "configuration-set/shop-test")),
    }
    assert outputs["SesConfigurationSetName"] == "shop-test"
    # The roles: assumable by the given service only. (Which policies they carry is checked
    # in the template: the emulator ignores a role's ManagedPolicyArns.)
    iam = aws.client("iam")
    for role_output in ("ApiRoleArn", "RelayRoleArn", "AdminRoleArn", "WorkerRoleArn"):
        role = iam.get_role(RoleName=outputs[role_output].rsplit("/", 1)[1])["Role"]
        trust = role["AssumeRolePolicyDocument"]
        if isinstance(trust, str):
            trust = json.loads(trust)
        assert trust["Statement"] == [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ]
    # The alarm mails the operators.
    alarm_topic = stack.physical_id("AlarmTopic")
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=alarm_topic)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("email", "ops@example.com")]


def test_what_the_emulator_skips_is_right_in_the_template():
    from cfnlint.decode import cfn_yaml  # here: its import costs every test process ~1 s

    template = cfn_yaml.load(str(TEMPLATE))
    resources = template["Resources"]
    by_type: dict[str, list[str]] = {}
    for logical_id, resource in resources.items():
        by_type.setdefault(resource["Type"], []).append(logical_id)
    assert set(by_type) >= EMULATOR_SKIPS

    # The DLQ accepts redrives from the order queue only (the emulator ignores this attribute).
    allow = resources["DeadLetterQueue"]["Properties"]["RedriveAllowPolicy"]
    assert allow["redrivePermission"] == "byQueue"
    arn = "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${QueueName}"
    assert allow["sourceQueueArns"] == [
        {"Fn::If": ["IsFifo", {"Fn::Sub": f"{arn}.fifo"}, {"Fn::Sub": arn}]}
    ]
    assert resources["OrderQueue"]["Properties"]["QueueName"] == {
        "Fn::If": ["IsFifo", {"Fn::Sub": "${QueueName}.fifo"}, {"Ref": "QueueName"}]
    }

    # The alarms: any visible message in the DLQ; SES's bounce and complaint rates.
    alarms = {
        resources[i]["Properties"]["MetricName"]: i for i in by_type["AWS::CloudWatch::Alarm"]
    }
    assert set(alarms) == {
        "ApproximateNumberOfMessagesVisible",
        "Reputation.BounceRate",
        "Reputation.ComplaintRate",
    }
    alarm = resources[alarms["ApproximateNumberOfMessagesVisible"]]["Properties"]
    assert alarm["Namespace"] == "AWS/SQS"
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}
    ]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["TreatMissingData"] == "notBreaching"
    for metric, threshold in (
        ("Reputation.BounceRate", "BounceRateAlarmThreshold"),
        ("Reputation.ComplaintRate", "ComplaintRateAlarmThreshold"),
    ):
        rate = resources[alarms[metric]]["Properties"]
        assert rate["Namespace"] == "AWS/SES"
        assert "Dimensions" not in rate  # the account's rates, the ones SES acts on
        assert rate["Threshold"] == {"Ref": threshold}
        assert rate["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert rate["TreatMissingData"] == "notBreaching"
        # Where the dead-letter alarm reports, they report.
        assert rate["AlarmActions"] == alarm["AlarmActions"]
        assert rate["OKActions"] == alarm["OKActions"]
    assert template["Parameters"]["BounceRateAlarmThreshold"]["Default"] == 0.05
    assert template["Parameters"]["ComplaintRateAlarmThreshold"]["Default"] == 0.001

    # SES: the configuration set sends bounce/complaint/delivery/reject events to the topic.
    (config_set_id,) = by_type["AWS::SES::ConfigurationSet"]
    assert resources[config_set_id]["Properties"]["Name"] == {"Ref": "SesConfigurationSetName"}
    (destination_id,) = by_type["AWS::SES::ConfigurationSetEventDestination"]
    destination = resources[destination_id]["Properties"]
    assert destination["ConfigurationSetName"] == {"Ref": config_set_id}
    event_destination = destination["EventDestination"]
    assert event_destination["Enabled"] is True
    assert set(event_destination["MatchingEventTypes"]) == {
        "bounce",
        "complaint",
        "delivery",
        "reject",
    }
    assert event_destination["SnsDestination"] == {"TopicARN": {"Ref": "SesEventsTopic"}}

    # Only SES, for this account and configuration set, may publish to that topic.
    (policy_id,) = by_type["AWS::SNS::TopicPolicy"]
    policy = resources[policy_id]["Properties"]
    assert policy["Topics"] == [{"Ref": "SesEventsTopic"}]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "ses.amazonaws.com"}
    assert statement["Action"] == "sns:Publish"
    assert statement["Condition"]["StringEquals"] == {
        "aws:SourceAccount": {"Ref": "AWS::AccountId"}
    }
    assert (
        "configuration-set/${SesConfigurationSetName}"
        in (statement["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"])
    )
    assert "DependsOn" in resources[destination_id]  # SES checks it may publish when created

    # SES events go to the web process over HTTPS, when its URL is given.
    (subscription_id,) = by_type["AWS::SNS::Subscription"]
    subscription = resources[subscription_id]
    assert subscription["Condition"] == "HasSesEventsWebhook"
    assert template["Conditions"]["HasSesEventsWebhook"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "SesEventsWebhookUrl"}, ""]}]
    }
    assert subscription["Properties"] == {
        "TopicArn": {"Ref": "SesEventsTopic"},
        "Protocol": "https",
        "Endpoint": {"Ref": "SesEventsWebhookUrl"},
    }
    assert template["Parameters"]["SesEventsWebhookUrl"]["AllowedPattern"] == "^$|^https://[^\\s]+$"

    # Each role carries its service's policies (the emulator ignores ManagedPolicyArns).
    assert "ManagedPolicyArns" not in resources["ApiRole"]["Properties"]  # no AWS call
    assert resources["RelayRole"]["Properties"]["ManagedPolicyArns"] == {
        "Fn::If": [
            "CreateOrderEvents",
            [{"Ref": "RelayPolicy"}, {"Ref": "OrderEventsPublisherPolicy"}],
            [{"Ref": "RelayPolicy"}],
        ]
    }
    assert resources["AdminRole"]["Properties"]["ManagedPolicyArns"] == [{"Ref": "AdminPolicy"}]
    assert resources["WorkerRole"]["Properties"]["ManagedPolicyArns"] == [{"Ref": "WorkerPolicy"}]
    for role in ("ApiRole", "RelayRole", "AdminRole", "WorkerRole"):
        assert resources[role]["Condition"] == "CreateRoles"


def test_emulator_really_skips_those_types(default_stack):
    """If the emulator learns a skipped type, this fails: deploy-test it instead."""
    summaries = aws.client("cloudformation").list_stack_resources(StackName=default_stack.name)
    created_types = {
        r["ResourceType"] for r in summaries["StackResourceSummaries"] if r.get("ResourceType")
    }
    assert not created_types & EMULATOR_SKIPS
    assert {"AWS::SQS::Queue", "AWS::SNS::Topic", "AWS::IAM::ManagedPolicy"} <= created_types

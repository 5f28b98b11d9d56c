"""docker-compose.yaml, checked statically (no Docker engine needed): it is a valid Compose file, it runs
Airflow as the official CeleryExecutor deployment does, and it points the pipeline at AWS and Snowflake
exactly as the local stack does (``connection_env`` in dev/claims_cdc_dev/stack.py), only with the
compose services' host names.

The Compose Specification JSON schema (draft-07) is vendored, byte for byte, in
tests/fixtures/compose-spec.json from repository compose-spec/compose-spec, path schema/compose-spec.json,
commit 00655e2222608fa6eaecdf12ac5195889ca2244a. The compose file itself follows Apache Airflow's
airflow-core/docs/howto/docker-compose/docker-compose.yaml at commit
b9584335b22b76079a6c27abf792aa664c815685 (apache/airflow).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from jsonschema import Draft7Validator

from claims_cdc.settings import Settings
from claims_cdc_dev import stack as local_stack

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
SCHEMA_FILE = ROOT / "tests" / "fixtures" / "compose-spec.json"
SCHEMA_SHA256 = "bc50c2d79102aed8df21b3a13e56c9396c7a06da6cff5ce37629f2ee7eb41735"

AIRFLOW_SERVICES = {
    "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker", "airflow-triggerer",
    "airflow-init",
}
STAND_INS = {"moto", "fakesnow"}
CDC_TOOLS = {"cdc-provision", "cdc-forwarder"}
EXPECTED_SERVICES = {"postgres", "redis"} | AIRFLOW_SERVICES | STAND_INS | CDC_TOOLS
#: The official file's optional services, allowed only behind a profile.
PROFILE_ONLY = {"airflow-cli", "flower"}
#: Services that run the pipeline's code, so must see the same connections and settings as the local stack.
PIPELINE_SERVICES = AIRFLOW_SERVICES | CDC_TOOLS
#: Keys that must agree with connection_env; others (Airflow home, executor, auth) differ by design.
AGREED_PREFIXES = ("AIRFLOW_CONN_", "CDC_", "AWS_")
MOTO_HOST, FAKESNOW_HOST = "moto", "fakesnow"
IMAGE_BASE = "apache/airflow:3.3.2-python3.11"


def _load() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load()


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


@pytest.fixture
def expected_env(tmp_path) -> dict[str, str]:
    env = local_stack.connection_env(local_stack.StackConfig(state_dir=tmp_path))
    return {key: value for key, value in env.items() if key.startswith(AGREED_PREFIXES)}


def _errors(validator: Draft7Validator, doc: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _argv(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else list(command)


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (a ./relative host path or a named volume), for short-syntax volumes."""
    mounts = {}
    for volume in service.get("volumes", []):
        assert isinstance(volume, str), f"use the short syntax SOURCE:TARGET[:MODE], got {volume!r}"
        source, target = volume.split(":")[:2]
        mounts[target] = source
    return mounts


def _ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, published port, container port) of each short-syntax port."""
    ports = []
    for port in service.get("ports", []):
        match = re.fullmatch(r"(\d+\.\d+\.\d+\.\d+):(\d+):(\d+)", str(port))
        assert match, f"publish as HOST_IP:PORT:PORT so the host interface is explicit, got {port!r}"
        ports.append((match[1], int(match[2]), int(match[3])))
    return ports


def _profile_free(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if not svc.get("profiles")}


# --- the Compose Specification ------------------------------------------------------------------------------


def test_vendored_schema_is_the_compose_spec_draft7_schema(validator):
    import hashlib

    assert validator.schema["$schema"] == "https://json-schema.org/draft-07/schema"
    assert validator.schema["title"] == "Compose Specification"
    # Pinned: the vendored bytes, compared with the upstream file at the commit named above when vendored.
    # Updating the schema is a deliberate change of this digest and of that commit.
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256


def test_compose_file_matches_the_compose_specification(compose, validator):
    assert _errors(validator, compose) == []


@pytest.mark.parametrize("breakage", [
    "ports is an int",
    "unknown service key",
    "unknown depends_on condition",
    "restart is a YAML boolean",
    "environment value is a mapping",
    "unknown top-level key",
])
def test_schema_rejects_a_broken_file(compose, validator, breakage):
    """The validation is not vacuous: each deliberate mistake is reported."""
    broken = copy.deepcopy(compose)
    services = broken["services"]
    if breakage == "ports is an int":
        services["airflow-apiserver"]["ports"] = 8080
    elif breakage == "unknown service key":
        services["moto"]["healthchek"] = services["moto"].pop("healthcheck")
    elif breakage == "unknown depends_on condition":
        services["cdc-forwarder"]["depends_on"]["cdc-provision"]["condition"] = "service_completed"
    elif breakage == "restart is a YAML boolean":
        services["cdc-provision"]["restart"] = False  # what an unquoted `restart: no` loads as
    elif breakage == "environment value is a mapping":
        services["airflow-worker"]["environment"]["AIRFLOW_CONN_AWS_DEFAULT"] = {"conn_type": "aws"}
    elif breakage == "unknown top-level key":
        broken["service"] = broken.pop("services")
    assert _errors(validator, broken)


# --- the deployment ---------------------------------------------------------------------------------------------


def test_services_are_the_official_deployment_plus_the_stand_ins(compose):
    services = compose["services"]
    assert set(_profile_free(compose)) == EXPECTED_SERVICES
    assert set(services) - EXPECTED_SERVICES <= PROFILE_ONLY


def test_keeps_the_apache_license_header():
    text = COMPOSE_FILE.read_text()
    assert text.startswith("# Licensed to the Apache Software Foundation (ASF) under one")
    assert "http://www.apache.org/licenses/LICENSE-2.0" in text


def test_celery_executor_with_redis_broker_and_postgres_metadata(compose):
    services = compose["services"]
    for name in AIRFLOW_SERVICES:
        env = _env(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
        assert (broker.scheme, broker.hostname) == ("redis", "redis"), name
        database = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        assert database.scheme.startswith("postgresql") and database.hostname == "postgres", name
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://"), name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:8080/"), name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false", name
        assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "false", name
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    # The worker's own setting, merged over the common block's anchor (the official file's warm shutdown).
    assert _env(services["airflow-worker"])["DUMB_INIT_SETSID"] == "0"


def test_dependencies_wait_for_health_and_provisioning(compose):
    services = compose["services"]

    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name].get("depends_on", {}).items()}

    for name in AIRFLOW_SERVICES:
        assert conditions(name)["postgres"] == conditions(name)["redis"] == "service_healthy", name
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert conditions(name)["airflow-init"] == "service_completed_successfully", name
    for name in ("airflow-scheduler", "airflow-worker", "airflow-triggerer"):
        assert conditions(name)["cdc-provision"] == "service_completed_successfully", name
    assert conditions("airflow-worker")["airflow-apiserver"] == "service_healthy"
    assert conditions("cdc-provision") == {"moto": "service_healthy", "fakesnow": "service_healthy"}
    assert conditions("cdc-forwarder")["cdc-provision"] == "service_completed_successfully"
    # A one-shot whose completion others wait for must not be restarted.
    assert services["cdc-provision"]["restart"] == "no"
    # Every service waited on as healthy defines how its health is checked.
    for name in services:
        for dep, condition in conditions(name).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            if condition == "service_healthy":
                assert services[dep].get("healthcheck", {}).get("test"), f"{dep} has no healthcheck"


def test_every_published_port_is_on_loopback(compose):
    for name, service in compose["services"].items():
        for host_ip, _, _ in _ports(service):
            assert host_ip == "127.0.0.1", name


def test_ports_match_the_local_stack(compose, tmp_path):
    cfg = local_stack.StackConfig(state_dir=tmp_path)
    services = compose["services"]
    assert _ports(services["airflow-apiserver"]) == [("127.0.0.1", 8080, 8080)]
    assert _ports(services["moto"]) == [("127.0.0.1", cfg.moto_port, cfg.moto_port)]
    assert _ports(services["fakesnow"]) == [("127.0.0.1", cfg.fakesnow_port, cfg.fakesnow_port)]
    moto_argv, fakesnow_argv = _argv(services["moto"]), _argv(services["fakesnow"])
    assert moto_argv[moto_argv.index("-p") + 1] == str(cfg.moto_port)
    assert moto_argv[moto_argv.index("-H") + 1] == "0.0.0.0"
    assert fakesnow_argv[fakesnow_argv.index("--port") + 1] == str(cfg.fakesnow_port)
    assert fakesnow_argv[fakesnow_argv.index("--host") + 1] == "0.0.0.0"
    # fakesnow's databases outlive the container.
    db_path = fakesnow_argv[fakesnow_argv.index("--db-path") + 1]
    assert _mounts(services["fakesnow"])[db_path] in compose["volumes"]


def _requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[\[=<>~!]", line)[0].lower())
    return names


def test_airflow_runs_the_official_image_extended_with_the_runtime_requirements_only(compose):
    services = compose["services"]
    airflow = {name: services[name] for name in AIRFLOW_SERVICES}
    assert len({svc["image"] for svc in airflow.values()}) == 1
    assert all(svc["build"] == airflow["airflow-worker"]["build"] for svc in airflow.values())
    build = airflow["airflow-worker"]["build"]
    assert build["context"] == "."
    dockerfile = build["dockerfile_inline"]
    assert dockerfile.splitlines()[0] == f"FROM {IMAGE_BASE}"
    assert "COPY requirements.txt /requirements.txt" in dockerfile
    assert "pip install --no-cache-dir -r /requirements.txt" in dockerfile
    assert "requirements-dev" not in dockerfile
    # The image's Airflow is the one requirements.txt pins.
    pinned = re.search(r"^apache-airflow==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert pinned and IMAGE_BASE.split(":")[1].startswith(pinned[1] + "-")
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in json.dumps(compose)


def test_only_the_stand_ins_and_tools_get_the_dev_requirements(compose):
    services = compose["services"]
    tools = {name: services[name] for name in STAND_INS | CDC_TOOLS}
    assert len({svc["image"] for svc in tools.values()}) == 1
    assert next(iter(tools.values()))["image"] != services["airflow-worker"]["image"]
    dockerfile = next(iter(tools.values()))["build"]["dockerfile_inline"]
    assert dockerfile.splitlines()[0] == f"FROM {IMAGE_BASE}"
    assert "pip install --no-cache-dir -r /requirements-dev.txt" in dockerfile
    # requirements-dev.txt installs the runtime too, from the copy beside it.
    assert "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert "COPY requirements.txt requirements-dev.txt /" in dockerfile


def test_the_runtime_requirements_name_no_emulator_test_or_lint_package():
    runtime = _requirement_names(ROOT / "requirements.txt")
    dev_only = _requirement_names(ROOT / "requirements-dev.txt")
    assert {"apache-airflow", "apache-airflow-providers-amazon", "apache-airflow-providers-snowflake"} <= runtime
    assert {"moto", "fakesnow", "pytest", "hypothesis", "playwright", "ruff", "faker"} <= dev_only
    assert runtime.isdisjoint(dev_only)


def test_project_folders_are_mounted_where_the_environment_expects_them(compose):
    services = compose["services"]
    for name in AIRFLOW_SERVICES | STAND_INS | CDC_TOOLS:
        env, mounts = _env(services[name]), _mounts(services[name])
        path = env["PYTHONPATH"].split(":")
        plugins = path[0]
        assert mounts[plugins] == "./plugins", name
        # claims_cdc.settings finds include/ next to plugins/ (PROJECT_ROOT / "include").
        assert mounts[str(Path(plugins).parent / "include")] == "./include", name
        if name in AIRFLOW_SERVICES:
            # Airflow runs the pipeline alone: the local tools are neither mounted nor on its path.
            assert path == [plugins], name
            assert "./dev" not in mounts.values(), name
            assert mounts[env["AIRFLOW__CORE__DAGS_FOLDER"]] == "./dags", name
            assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == plugins, name
        else:
            assert [mounts[entry] for entry in path[1:]] == ["./dev"], name


def test_batch_files_live_on_one_volume_shared_by_every_airflow_container(compose):
    services = compose["services"]
    sources = set()
    for name in AIRFLOW_SERVICES:
        root = urlsplit(_env(services[name])["CDC_BATCH_ROOT"])
        assert root.scheme == "file", name
        sources.add(_mounts(services[name])[root.path])
    assert len(sources) == 1
    assert sources <= set(compose["volumes"])  # a named volume, not a host folder


def test_connections_and_settings_agree_with_the_local_stack(compose, expected_env, tmp_path):
    cfg = local_stack.StackConfig(state_dir=tmp_path)
    services = compose["services"]
    moto_port = _ports(services["moto"])[0][2]
    fakesnow_port = _ports(services["fakesnow"])[0][2]
    compose_endpoint = f"http://{MOTO_HOST}:{moto_port}"
    assert expected_env["AWS_ENDPOINT_URL"] == cfg.endpoint  # what is mapped below

    for name in PIPELINE_SERVICES:
        env = _env(services[name])
        agreed = {key: value for key, value in env.items() if key.startswith(AGREED_PREFIXES)}
        assert set(agreed) == set(expected_env), name

        aws, expected_aws = (json.loads(d["AIRFLOW_CONN_AWS_DEFAULT"]) for d in (agreed, expected_env))
        assert expected_aws["extra"]["endpoint_url"] == cfg.endpoint
        expected_aws["extra"]["endpoint_url"] = compose_endpoint
        assert aws == expected_aws, name

        snow, expected_snow = (json.loads(d["AIRFLOW_CONN_SNOWFLAKE_DEFAULT"]) for d in (agreed, expected_env))
        assert expected_snow["extra"]["host"] == "127.0.0.1"
        assert expected_snow["extra"]["port"] == cfg.fakesnow_port == fakesnow_port
        expected_snow["extra"]["host"] = FAKESNOW_HOST
        assert snow == expected_snow, name

        assert agreed["AWS_ENDPOINT_URL"] == compose_endpoint, name
        assert agreed["CDC_BATCH_ROOT"].startswith("file:///"), name
        rest = {key for key in expected_env if key.startswith(("CDC_", "AWS_"))}
        rest -= {"AWS_ENDPOINT_URL", "CDC_BATCH_ROOT", "CDC_RUN_DEADLINE_SECONDS"}
        assert {key: agreed[key] for key in rest} == {key: expected_env[key] for key in rest}, name
        # A deployment, like `make up`, has the overrun alert; the stack on its own (dags test) has none.
        assert agreed["CDC_RUN_DEADLINE_SECONDS"] == str(Settings().run_deadline_seconds) == "3600", name


def test_forwarder_and_provisioning_use_the_pipeline_table_and_stream(compose, tmp_path):
    cfg = local_stack.StackConfig(state_dir=tmp_path)
    forwarder = compose["services"]["cdc-forwarder"]
    argv, env = _argv(forwarder), _env(forwarder)
    assert argv[argv.index("--table") + 1] == cfg.table == env["CDC_DYNAMODB_TABLE"]
    assert argv[argv.index("--stream") + 1] == cfg.stream == env["CDC_KINESIS_STREAM"]
    # Its positions survive a restart: the state file is on a named volume.
    state_dir = str(Path(argv[argv.index("--state-file") + 1]).parent)
    assert _mounts(forwarder)[state_dir] in compose["volumes"]
    assert _argv(compose["services"]["cdc-provision"])[-1] == "provision"


def test_stack_provision_command_exists(monkeypatch):
    """`python -m claims_cdc_dev.stack provision` (cdc-provision's command) is accepted; no servers used."""
    calls = []
    monkeypatch.setattr(local_stack, "provision_aws", lambda cfg, env: calls.append(("aws", cfg.table)))
    monkeypatch.setattr(local_stack, "provision_snowflake", lambda env: calls.append(("snowflake",)) or [])
    assert local_stack.main(["provision"]) == 0
    assert calls == [("aws", "InsuranceClaims"), ("snowflake",)]


def test_every_python_module_run_by_a_service_exists(compose):
    modules = {}
    for name, service in compose["services"].items():
        argv = _argv(service)
        if argv[:2] == ["python", "-m"]:
            modules[name] = argv[2]
    assert set(modules) == STAND_INS | CDC_TOOLS
    for name, module in modules.items():
        assert module.startswith("claims_cdc_dev."), name
        path = ROOT / "dev" / Path(*module.split("."))
        assert path.with_suffix(".py").is_file() or (path / "__main__.py").is_file(), f"{name}: {module}"

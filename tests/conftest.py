"""Test set-up: one local stack per session, on free ports, under .local/test-stack (or CDC_TEST_STACK_DIR).

Tiers are decided by markers: a test that needs the servers is marked ``stack`` (and must be: collection
fails for a test that asks for the ``stack`` fixture without it). ``make test-fast`` runs ``-m "not stack"``.

The environment that points Airflow and the hooks at that stack is set here, at import time, before
anything imports Airflow (Airflow reads AIRFLOW_HOME once, on first import).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT / "dev"))
sys.path.insert(0, str(ROOT / "tests"))

from claims_cdc_dev import stack as local_stack
from helpers import free_port

STACK = local_stack.StackConfig(
    state_dir=Path(os.getenv("CDC_TEST_STACK_DIR") or ROOT / ".local" / "test-stack"),
    moto_port=free_port(),
    fakesnow_port=free_port(),
    shards=2,
    forwarder=False,  # started per test by the `forwarder` fixture
)
STACK_ENV = {
    **local_stack.connection_env(STACK),
    "CDC_SENSOR_TIMEOUT": "30",
    "CDC_POKE_INTERVAL": "0.5",
}
os.environ.update(STACK_ENV)

# Hypothesis profiles, one per tier. `make test-fast` loads "dev" (few examples, for the edit loop);
# `make test` and CI load "ci" (the full count, derandomized so CI is repeatable). A test scales its
# own count from the loaded profile's max_examples (see helpers.examples), so the ratio between a cheap
# model test and a slow end-to-end one is kept in both tiers.
_SLOW_FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
hypothesis_settings.register_profile("ci", max_examples=100, derandomize=True, deadline=None,
                                     suppress_health_check=_SLOW_FIXTURES, print_blob=True)
hypothesis_settings.register_profile("dev", max_examples=10, deadline=None, suppress_health_check=_SLOW_FIXTURES)
hypothesis_settings.load_profile(os.getenv("HYPOTHESIS_PROFILE") or ("ci" if os.getenv("CI") else "dev"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that uses the local stack must say so with the ``stack`` marker, or the fast tier would start it."""
    unmarked = [item.nodeid for item in items
                if "stack" in getattr(item, "fixturenames", ()) and item.get_closest_marker("stack") is None]
    if unmarked:
        raise pytest.UsageError("tests that use the `stack` fixture need @pytest.mark.stack: " + ", ".join(unmarked))
    # The second process must not start the main process's stack (same folder): only server-less tests go there.
    misplaced = [item.nodeid for item in items
                 if item.get_closest_marker("second_process") and "stack" in getattr(item, "fixturenames", ())]
    if misplaced:
        raise pytest.UsageError("tests marked second_process may not use the `stack` fixture: " + ", ".join(misplaced))


@pytest.hookimpl(trylast=True)  # after `-m` has deselected: only the tests that will run count
def pytest_collection_finish(session: pytest.Session) -> None:
    """When some test will need the local stack, start it now, in another process, and run the tests that
    need no server first (stable order otherwise): its half-minute start-up overlaps with them.

    A process, not a thread: the in-process moto of the fast tests (``mock_aws``) intercepts every botocore
    call of this process, and would catch the stack's provisioning.
    """
    if not any("stack" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    session.items.sort(key=lambda item: item.get_closest_marker("stack") is not None)
    env = local_stack.tool_env({**os.environ, "CDC_STATE_DIR": str(STACK.state_dir),
                                "CDC_MOTO_PORT": str(STACK.moto_port), "CDC_FAKESNOW_PORT": str(STACK.fakesnow_port),
                                "CDC_SHARDS": str(STACK.shards), "CDC_FORWARDER": "off"})
    STACK.state_dir.mkdir(parents=True, exist_ok=True)
    log = (STACK.state_dir / "stack-up.log").open("wb")
    _STARTING.append(subprocess.Popen([sys.executable, "-m", "claims_cdc_dev.stack", "up"], env=env, cwd=ROOT,
                                      stdout=log, stderr=subprocess.STDOUT))


#: The `stack up` process started at collection's end, if any (see pytest_collection_finish).
_STARTING: list[subprocess.Popen] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A stack started in the background is stopped even when no test got to use it (``-x``, interrupt)."""
    if _STARTING:
        _STARTING[0].wait(timeout=600)
        local_stack.down(STACK)


@pytest.fixture(scope="session")
def stack() -> Iterator[local_stack.StackConfig]:
    """The local stack: moto and fakesnow servers, provisioned, Airflow's database migrated.

    Every test that touches Airflow's metadata database must depend on this fixture: starting the stack
    replaces the database file, which an engine opened earlier in this process would not see.
    """
    if _STARTING:
        if _STARTING[0].wait(timeout=600) != 0:
            log = (STACK.state_dir / "stack-up.log").read_text(errors="replace")
            pytest.exit(f"the local stack did not start (exit {_STARTING[0].returncode}):\n{log[-3000:]}", returncode=3)
    else:
        local_stack.up(STACK)
    yield STACK
    local_stack.down(STACK)


@pytest.fixture
def settings(stack):
    from claims_cdc.settings import load_settings

    return load_settings()


@pytest.fixture
def mapping(settings):
    from claims_cdc.mapping import load_mapping

    return load_mapping(settings.mapping_path)


@pytest.fixture
def snow(settings, stack):
    """An open Snowflake session (through ClaimsSnowflakeHook) on the local fakesnow server."""
    from claims_cdc.snowflake import session

    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as opened:
        yield opened


@pytest.fixture
def aws_mock(monkeypatch) -> Iterator[None]:
    """In-process moto (``mock_aws``) behind the ``aws_mock`` Airflow connection, which has a region and no
    endpoint: botocore then talks to "AWS", which mock_aws intercepts. Nothing exists until a test makes it."""
    import json

    from moto import mock_aws

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # the session's env points at the test stack
    monkeypatch.setenv("AIRFLOW_CONN_AWS_MOCK", json.dumps({"conn_type": "aws", "login": "testing",
                                                            "password": "testing",
                                                            "extra": {"region_name": "us-east-1"}}))
    with mock_aws():
        yield


@pytest.fixture(scope="session")
def aws_clients(stack):
    """DynamoDB and Kinesis clients on the local moto server, made once (through the provider's hooks, each
    costs a connection lookup and a session: a quarter of a second per test saved)."""
    from claims_cdc import aws
    from claims_cdc.settings import load_settings

    settings = load_settings()
    return aws.dynamodb_client(settings.aws_conn_id), aws.kinesis_client(settings.aws_conn_id)


@pytest.fixture
def clean_pipeline(stack, settings, mapping, snow, aws_clients) -> Iterator[None]:
    """Empty DynamoDB table and Kinesis stream, fresh Snowflake tables, no batch files, no forwarder."""

    local_stack.stop_forwarder(stack)
    (stack.state_dir / "forwarder.json").unlink(missing_ok=True)
    ddb, kinesis = aws_clients
    if settings.dynamodb_table in ddb.list_tables()["TableNames"]:
        ddb.delete_table(TableName=settings.dynamodb_table)
    if settings.kinesis_stream in kinesis.list_streams()["StreamNames"]:
        kinesis.delete_stream(StreamName=settings.kinesis_stream, EnforceConsumerDeletion=True)
    local_stack.create_table_and_stream(stack, ddb, kinesis)
    _empty_snowflake_tables(snow, settings, mapping)
    shutil.rmtree(stack.state_dir / "batches", ignore_errors=True)
    yield


def _empty_snowflake_tables(snow, settings, mapping) -> None:
    """Every table of setup.sql emptied (a third of dropping and creating them again); when one is missing
    (a test dropped it), all are dropped and created. A test that alters a table's columns rebuilds them."""
    from claims_cdc import warehouse

    names = [settings.dest_table, settings.cdc_table, settings.landing_table, settings.history_table,
             settings.checkpoint_table, settings.batch_table, settings.reconciliation_table, settings.rejected_table,
             settings.tombstone_table]
    try:
        for name in names:
            snow.connection.cursor().execute(f"DELETE FROM {settings.database}.{settings.schema}.{name}")
    except Exception:  # noqa: BLE001 - any table missing or broken: build them all again
        warehouse.run_teardown(snow, settings, mapping)
        warehouse.run_setup(snow, settings, mapping)


@pytest.fixture
def forwarder(stack, clean_pipeline) -> Iterator[None]:
    """The DynamoDB-Streams-to-Kinesis forwarder, running for this test only."""
    local_stack.start_forwarder(stack, STACK_ENV)
    yield
    local_stack.stop_forwarder(stack)


@pytest.fixture
def chaotic_forwarder(stack, clean_pipeline) -> Iterator[None]:
    """The forwarder in chaos mode: half the records duplicated, a third delivered out of order."""
    local_stack.start_forwarder(stack, STACK_ENV, duplicate_rate=0.5, reorder_rate=0.3)
    yield
    local_stack.stop_forwarder(stack)

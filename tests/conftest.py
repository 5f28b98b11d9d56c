"""Test set-up: one local stack per session, on free ports, under .local/test-stack.

The environment that points Airflow and the hooks at that stack is set here, at import time, before
anything imports Airflow (Airflow reads AIRFLOW_HOME once, on first import).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT / "tests"))

from claims_cdc.local import stack as local_stack
from helpers import free_port

STACK = local_stack.StackConfig(
    state_dir=ROOT / ".local" / "test-stack",
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


@pytest.fixture(scope="session")
def stack() -> Iterator[local_stack.StackConfig]:
    """The local stack: moto and fakesnow servers, provisioned, Airflow's database migrated.

    Every test that touches Airflow's metadata database must depend on this fixture: starting the stack
    replaces the database file, which an engine opened earlier in this process would not see.
    """
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
def clean_pipeline(stack, settings, mapping, snow) -> Iterator[None]:
    """Empty DynamoDB table and Kinesis stream, fresh Snowflake tables, no batch files, no forwarder."""
    from claims_cdc import aws, warehouse

    local_stack.stop_forwarder(stack)
    (stack.state_dir / "forwarder.json").unlink(missing_ok=True)
    ddb = aws.dynamodb_client(settings)
    kinesis = aws.kinesis_client(settings)
    if settings.dynamodb_table in ddb.list_tables()["TableNames"]:
        ddb.delete_table(TableName=settings.dynamodb_table)
    if settings.kinesis_stream in kinesis.list_streams()["StreamNames"]:
        kinesis.delete_stream(StreamName=settings.kinesis_stream, EnforceConsumerDeletion=True)
    local_stack.provision_aws(stack, STACK_ENV)
    warehouse.run_teardown(snow, settings, mapping)
    warehouse.run_setup(snow, settings, mapping)
    shutil.rmtree(stack.state_dir / "batches", ignore_errors=True)
    yield


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

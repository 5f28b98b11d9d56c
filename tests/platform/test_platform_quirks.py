"""Minimal reproductions of platform behaviour that surprised us, each worked around in one named place.

If one of these starts failing, the platform changed: revisit the workaround it names.
"""

from __future__ import annotations

import json
import sys

import pytest


def test_airflow_plugin_loader_imports_plugin_files_as_top_level_modules(tmp_path, monkeypatch):
    """Workaround: plugins/.airflowignore keeps claims_cdc out of the plugin loader.

    Airflow loads plugins/pkg/snowflake.py as the top-level module ``snowflake``, shadowing the real
    package, so SnowflakeHook then fails with "'snowflake' is not a package".
    """
    from airflow._shared.plugins_manager.plugins_manager import _load_plugins_from_plugin_directory

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "quirk_probe_module.py").write_text("VALUE = 1\n")
    monkeypatch.delitem(sys.modules, "quirk_probe_module", raising=False)
    _load_plugins_from_plugin_directory(str(tmp_path))
    assert sys.modules["quirk_probe_module"].VALUE == 1

    (tmp_path / ".airflowignore").write_text("pkg/\n")
    del sys.modules["quirk_probe_module"]
    _load_plugins_from_plugin_directory(str(tmp_path))
    assert "quirk_probe_module" not in sys.modules


def test_our_plugins_folder_ignores_the_package():
    from claims_cdc.settings import PROJECT_ROOT

    assert "claims_cdc/" in (PROJECT_ROOT / "plugins" / ".airflowignore").read_text().splitlines()


@pytest.mark.second_process  # a subprocess importing Airflow: slow, server-less
def test_dagbag_get_dag_queries_the_metadata_database_but_dags_does_not(tmp_path):
    """Workaround: the offline DAG integrity test (tests/dags) reads ``DagBag.dags``.

    Parsing needs no database, but ``get_dag()`` asks the metadata database whether the DAG is stale, and
    fails on a database that was never migrated. Run in a child process with an empty AIRFLOW_HOME: this
    process's database may have been migrated by the stack fixture.
    """
    import os
    import subprocess

    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "probe_dag.py").write_text(
        "from airflow.sdk import dag\n@dag(schedule=None)\ndef quirk_probe():\n    pass\nquirk_probe()\n")
    probe = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(tmp_path / 'dags')!r})\n"
        "assert bag.import_errors == {} and 'quirk_probe' in bag.dags, bag.import_errors\n"
        "try:\n    bag.get_dag('quirk_probe')\nexcept Exception as error:\n    print('get_dag failed:', error)\n"
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow")}
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "get_dag failed:" in done.stdout and "no such table" in done.stdout


@pytest.mark.second_process  # a subprocess importing Airflow: slow, server-less
def test_airflow_logging_writes_log_lines_to_stdout_until_moved_to_stderr():
    """Workaround: claims_cdc.admin._log_lines_to_stderr (around `admin status`, so that --json parses).

    Once Airflow is imported, its logging set-up writes every log line (the hooks', the connector's) to
    stdout: the root handler holds the stdout of that moment, and structlog loggers take sys.stdout when made.
    """
    import subprocess

    probe = (
        "import logging, structlog, sys\n"
        "import claims_cdc.admin as admin\n"
        "logging.getLogger('quirk.probe').warning('stdlib line before')\n"
        "structlog.get_logger('quirk.probe').warning('structlog line before')\n"
        "with admin._log_lines_to_stderr():\n"
        "    logging.getLogger('quirk.probe').warning('stdlib line inside')\n"
        "    structlog.get_logger('quirk.probe').warning('structlog line inside')\n"
        "print('output')\n"
    )
    from claims_cdc.settings import PROJECT_ROOT

    env = {**__import__("os").environ, "PYTHONPATH": str(PROJECT_ROOT / "plugins")}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "stdlib line before" in done.stdout and "structlog line before" in done.stdout  # the surprise
    assert "line inside" not in done.stdout and done.stdout.rstrip().endswith("output")
    assert "stdlib line inside" in done.stderr and "structlog line inside" in done.stderr


@pytest.mark.stack
def test_fakesnow_returns_a_null_timestamp_as_the_epoch(snow):
    """No workaround needed in the pipeline (it never reads timestamps back), but tests must not trust
    a NULL TIMESTAMP_NTZ read through the fakesnow server: it arrives as 1970-01-01."""
    cursor = snow.connection.cursor()
    cursor.execute("SELECT NULL::TIMESTAMP_NTZ(9), NULL::TIMESTAMP_NTZ(9) IS NULL")
    value, is_null = cursor.fetchone()
    assert is_null is True
    assert value is not None and value.year == 1970


@pytest.fixture
def raw_cursor(stack):
    """A bare connector cursor that gives up at once: the connector retries HTTP 500 answers for minutes."""
    import snowflake.connector

    connection = snowflake.connector.connect(
        user="fake", password="snow", account="fakesnow", database="CDC_DB", schema="CDC_SCHEMA",
        host="127.0.0.1", port=stack.fakesnow_port, protocol="http", paramstyle="qmark", network_timeout=1,
        session_parameters={"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
    )
    yield connection.cursor()
    connection.close()


@pytest.mark.stack
def test_fakesnow_cannot_run_merge_inside_an_explicit_transaction(raw_cursor):
    """Workaround: warehouse.merge_pending runs each MERGE on its own, every step idempotent."""
    cursor = raw_cursor
    merge = ("MERGE INTO quirk_t t USING (SELECT 'a' AS k, 'b' AS v) s ON t.k = s.k "
             "WHEN NOT MATCHED THEN INSERT (k, v) VALUES (s.k, s.v)")
    cursor.execute("CREATE OR REPLACE TEMPORARY TABLE quirk_t (k STRING, v STRING)")
    cursor.execute(merge)  # the control: on its own, the same MERGE runs
    cursor.execute("SELECT COUNT(*) FROM quirk_t")
    assert cursor.fetchone()[0] == 1
    cursor.execute("DELETE FROM quirk_t")
    cursor.execute("BEGIN TRANSACTION")
    try:
        with pytest.raises(Exception):  # noqa: B017 - the server answers HTTP 500, whatever the cause
            cursor.execute(merge)
    finally:
        cursor.execute("ROLLBACK")


@pytest.mark.stack
def test_fakesnow_cannot_flatten_inside_merge_using(raw_cursor):
    """Workaround: merge.sql names the rows to merge by a bound cdc_merge_id, not a FLATTENed id list."""
    cursor = raw_cursor
    cursor.execute("CREATE OR REPLACE TEMPORARY TABLE quirk_m (k STRING)")
    with pytest.raises(Exception, match="syntax error"):
        cursor.execute(
            "MERGE INTO quirk_m t USING (SELECT value::STRING AS k FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?)))) s "
            "ON t.k = s.k WHEN NOT MATCHED THEN INSERT (k) VALUES (s.k)",
            [json.dumps(["a"])],
        )


def _reshard_probe(monkeypatch):
    """Split a one-shard stream in in-process moto; return (parent records, where a new record lands)."""
    import boto3
    from moto import mock_aws

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        kinesis = boto3.client("kinesis", region_name="us-east-1")
        kinesis.create_stream(StreamName="probe", ShardCount=1)
        kinesis.put_record(StreamName="probe", Data=b"old", PartitionKey="k", ExplicitHashKey="1")
        kinesis.split_shard(StreamName="probe", ShardToSplit="shardId-000000000000", NewStartingHashKey="2" * 20)
        new = kinesis.put_record(StreamName="probe", Data=b"new", PartitionKey="k", ExplicitHashKey="1")
        iterator = kinesis.get_shard_iterator(StreamName="probe", ShardId="shardId-000000000000",
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        parent = [r["Data"] for r in kinesis.get_records(ShardIterator=iterator)["Records"]]
        return parent, new["ShardId"]


def test_moto_resharding_differs_from_aws_until_patched(monkeypatch):
    """Workaround: claims_cdc_dev.moto_server patches moto before serving (the stack runs it)."""
    from moto.kinesis.models import Stream

    if not getattr(Stream, "_claims_cdc_patched", False):
        parent, landed_on = _reshard_probe(monkeypatch)
        # moto re-puts the parent's records and keeps routing new ones to the closed parent.
        assert (parent, landed_on) == ([b"old", b"new"], "shardId-000000000000")

    from claims_cdc_dev.moto_server import patch_moto_resharding

    patch_moto_resharding()
    parent, landed_on = _reshard_probe(monkeypatch)
    # As on AWS: the parent keeps its own record only, and new records go to an open child.
    assert (parent, landed_on) == ([b"old"], "shardId-000000000001")


def test_moto_sequence_number_ends_answer_as_moto_does_once_patched():
    """Workaround: claims_cdc_dev.moto_server reads a shard's first and last sequence numbers from the ends
    of its records (moto copies all their keys for each put: putting n records took time in n²)."""
    from moto.kinesis.models import Shard

    from claims_cdc_dev.moto_server import patch_moto_sequence_numbers

    def moto_min(shard):  # moto 5.2's own bodies, for comparison
        keys = list(shard.records.keys())
        return keys[0] if keys else 0

    def moto_max(shard):
        keys = list(shard.records.keys())
        return keys[-1] if keys else 0

    patch_moto_sequence_numbers()
    shard = Shard(0, 0, 2**128)
    assert (shard.get_min_sequence_number(), shard.get_max_sequence_number()) == (moto_min(shard), moto_max(shard))
    for i in range(5):
        shard.put_record(f"key-{i}", "ZGF0YQ==", None)
    del shard.records[1]  # a trimmed head, as after retention
    assert (shard.get_min_sequence_number(), shard.get_max_sequence_number()) == (moto_min(shard), moto_max(shard))
    assert shard.put_record("key-5", "ZGF0YQ==", None) == "6"


def test_moto_get_records_pages_pass_awss_10_mib_until_patched(aws_mock):
    """Workaround: claims_cdc_dev.moto_server stops a GetRecords page at 10 MiB of data, as AWS does; moto
    returns up to Limit records whatever their size (the reader's memory follows its page's size)."""
    import boto3
    from moto.kinesis.models import Shard

    from claims_cdc_dev.moto_server import GET_RECORDS_MAX_BYTES, patch_moto_get_records_size

    client = boto3.client("kinesis", region_name="us-east-1")
    client.create_stream(StreamName="big", ShardCount=1)
    for i in range(12):  # 12 records of 1,000,000 bytes (Kinesis takes up to 1 MiB a record): 12 MB
        client.put_record(StreamName="big", Data=bytes([65 + i]) * 1_000_000, PartitionKey="k")

    def pages():
        iterator = client.get_shard_iterator(StreamName="big", ShardId="shardId-000000000000",
                                             ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        sizes = []
        while True:
            page = client.get_records(ShardIterator=iterator, Limit=10_000)
            if not page["Records"]:
                return sizes
            sizes.append([record["Data"][:1] for record in page["Records"]])
            iterator = page["NextShardIterator"]

    if not getattr(Shard, "_claims_cdc_page_cap", False):
        assert [len(page) for page in pages()] == [12]  # 12 MB in one page
    patch_moto_get_records_size()
    read = pages()
    # As on AWS: at most 10 MiB a page (10 records and their keys), every record once, in order.
    assert [len(page) for page in read] == [10, 2]
    assert [first for page in read for first in page] == [bytes([65 + i]) for i in range(12)]
    assert 10 * 1_000_001 <= GET_RECORDS_MAX_BYTES < 11 * 1_000_001


def test_moto_count_scan_answers_as_moto_does_once_patched(aws_mock):
    """Workaround: claims_cdc_dev.moto_server counts a plain Select=COUNT scan without copying every item
    (moto took about 1 ms an item: 20 s for the bench's 20,000 claims). The counts are moto's own: each
    segment's and the whole table's equal what listing the items gives; a filtered count is moto's own."""
    import boto3

    from claims_cdc_dev.moto_server import patch_moto_count_scan

    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(TableName="T", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
    for i in range(40):
        client.put_item(TableName="T", Item={"k": {"S": f"key-{i}"}, "n": {"N": str(i)}})

    def listed(**segment):
        return sum(len(p["Items"]) for p in client.get_paginator("scan").paginate(TableName="T", **segment))

    def counted(**kwargs):
        return sum(p["Count"] for p in client.get_paginator("scan").paginate(TableName="T", Select="COUNT",
                                                                            **kwargs))

    before = [counted(Segment=s, TotalSegments=3) for s in range(3)]
    patch_moto_count_scan()
    assert counted() == listed() == 40
    assert [counted(Segment=s, TotalSegments=3) for s in range(3)] == before == [
        listed(Segment=s, TotalSegments=3) for s in range(3)]
    assert counted(FilterExpression="n < :ten", ExpressionAttributeValues={":ten": {"N": "10"}}) == 10
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.scan(TableName="NoSuchTable", Select="COUNT")


def test_soft_fail_sensor_turns_an_airflow_exception_on_resume_into_a_skip_with_its_own_message():
    """Workaround: claims_cdc.sensors raises KinesisTriggerError (a RuntimeError) for the trigger's error
    event, so it fails and retries instead of being skipped, and logs the timeout's reason itself."""
    from airflow.sdk import BaseSensorOperator
    from airflow.sdk.exceptions import AirflowException, AirflowSkipException

    class Probe(BaseSensorOperator):
        def poke(self, context):
            return False

        def execute_complete(self, context, event=None):
            raise AirflowException("the trigger failed: Kinesis unreachable")

    probe = Probe(task_id="probe", soft_fail=True)
    with pytest.raises(AirflowSkipException) as skipped:
        probe.resume_execution("execute_complete", {"event": {}}, {})
    assert "Kinesis unreachable" not in str(skipped.value)
    assert "soft_fail" in str(skipped.value)


@pytest.mark.parametrize("where", ["poke", "execute_complete"])
def test_soft_fail_sensor_turns_an_airflow_fail_exception_into_a_skip(where):
    """AirflowFailException means "fail, do not retry", but a soft_fail sensor skips instead, from poke and
    on resume alike. Workaround: claims_cdc.sensors carries it past BaseSensorOperator in a plain exception
    (``_FailureInTransit``) and raises it again outside, so a missing stream fails rather than skips."""
    from airflow.sdk import BaseSensorOperator
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    class Probe(BaseSensorOperator):
        def poke(self, context):
            raise AirflowFailException("the stream does not exist")

        def execute_complete(self, context, event=None):
            raise AirflowFailException("the stream does not exist")

    probe = Probe(task_id="probe", soft_fail=True, poke_interval=0.01, timeout=5)
    with pytest.raises(AirflowSkipException):
        if where == "poke":
            probe.execute({})
        else:
            probe.resume_execution("execute_complete", {"event": {}}, {})



@pytest.mark.stack
def test_dag_test_of_a_dag_with_a_deadline_alert_fails_when_the_run_succeeds(stack, clean_pipeline, monkeypatch):
    """dag.test() serializes the DAG in memory (no deadline_alert rows), so its scheduler DAG's ``deadline``
    holds encoded alerts, not row ids, and the success path's lookup by id fails. Worked around in
    tests/helpers.py (``without_deadline``), for dag.test() only; the scheduler writes the rows. Shown with
    claims_cdc (CDC_RUN_DEADLINE_SECONDS) on an idle stream: a run that ends skipped, so succeeds, at once."""
    from airflow.dag_processing.dagbag import DagBag
    from sqlalchemy.exc import StatementError

    from claims_cdc.settings import PROJECT_ROOT
    from helpers import fresh_metadata_connections, without_deadline

    monkeypatch.setenv("CDC_RUN_DEADLINE_SECONDS", "3600")  # as `make up` sets it (the tests' stack: 0)

    def claims_cdc():
        fresh_metadata_connections()
        return DagBag(dag_folder=str(PROJECT_ROOT / "dags")).get_dag("claims_cdc")

    assert claims_cdc().deadline
    with pytest.raises(StatementError, match="has no attribute 'hex'"):
        claims_cdc().test(run_conf={"sensor_timeout": 2})
    assert without_deadline(claims_cdc()).test(run_conf={"sensor_timeout": 2}).state == "success"


@pytest.mark.stack  # starts a fakesnow server of its own (not the session's), twice
def test_fakesnow_forgets_its_stages_when_restarted_but_keeps_its_tables(tmp_path, monkeypatch):
    """fakesnow attaches its own catalog (``_fs_global``, where stages live) in memory: after a restart on
    the same database folder the tables are there, the stages are not. Worked around in
    claims_cdc_dev.fakesnow_server (``--setup``: the idempotent set-up runs before the server listens, as
    claims_cdc_dev.stack.restart_fakesnow starts it); real Snowflake keeps its stages."""
    from claims_cdc.snowflake import ClaimsSnowflakeHook
    from claims_cdc_dev import stack as local_stack
    from helpers import free_port

    cfg = local_stack.StackConfig(state_dir=tmp_path, fakesnow_port=free_port())
    env = local_stack.connection_env(cfg)
    monkeypatch.setenv("AIRFLOW_CONN_SNOWFLAKE_PROBE", env["AIRFLOW_CONN_SNOWFLAKE_DEFAULT"])

    def run(*statements):
        connection = ClaimsSnowflakeHook(snowflake_conn_id="snowflake_probe").get_conn()
        try:
            cursor = connection.cursor()
            for statement in statements:
                cursor.execute(statement)
            return cursor.fetchall()
        finally:
            connection.close()

    try:
        local_stack.start_fakesnow(cfg, env)
        local_stack._wait_for_port(cfg.fakesnow_port, "fakesnow", cfg.log_dir / "fakesnow.log")
        run("CREATE SCHEMA IF NOT EXISTS CDC_DB.s",
            "CREATE TABLE CDC_DB.s.t (x INT)", "INSERT INTO CDC_DB.s.t VALUES (1)",
            "CREATE STAGE CDC_DB.s.st")
        stages = "SELECT COUNT(*) FROM _fs_global._fs_information_schema._fs_stages"
        assert run(stages) == [(1,)]
        local_stack.stop_fakesnow(cfg)
        local_stack.start_fakesnow(cfg, env)
        local_stack._wait_for_port(cfg.fakesnow_port, "fakesnow", cfg.log_dir / "fakesnow.log")
        assert run("SELECT x FROM CDC_DB.s.t") == [(1,)]
        assert run(stages) == [(0,)]
    finally:
        local_stack.stop_fakesnow(cfg)


def test_moto_export_writes_no_manifest_and_echoes_no_export_time(aws_mock):
    """moto 5.2.5's ExportTableToPointInTime writes one gzip data file (``{"Item": ...}`` per line) under
    ``<prefix>/AWSDynamoDB/<uuid>/data/``, and neither the manifest files AWS writes nor ``ExportManifest`` /
    ``ExportTime`` in DescribeExport; it also exports the table as it is when asked, whatever ExportTime says.
    Workaround in ONE place, claims_cdc.dynamodb_reader.export_data_files (listing under the run's own
    prefix) and export_time (the time asked for)."""
    import gzip
    import json
    import time
    from datetime import UTC, datetime, timedelta

    import boto3

    from claims_cdc.dynamodb_reader import export_data_files, export_time

    ddb = boto3.client("dynamodb", region_name="us-east-1")
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="exports")
    arn = ddb.create_table(TableName="T", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                           AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                           BillingMode="PAY_PER_REQUEST")["TableDescription"]["TableArn"]
    for i in range(3):
        ddb.put_item(TableName="T", Item={"k": {"S": f"key-{i}"}})
    with pytest.raises(ddb.exceptions.ClientError, match="PointInTimeRecoveryUnavailable"):
        ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket="exports", S3Prefix="p", ExportFormat="DYNAMODB_JSON")
    ddb.update_continuous_backups(TableName="T", PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    asked = datetime.now(UTC) - timedelta(hours=1)
    started = ddb.export_table_to_point_in_time(TableArn=arn, ExportTime=asked, S3Bucket="exports", S3Prefix="p/run",
                                                ExportFormat="DYNAMODB_JSON")["ExportDescription"]
    for _ in range(50):
        done = ddb.describe_export(ExportArn=started["ExportArn"])["ExportDescription"]
        if done["ExportStatus"] != "IN_PROGRESS":
            break
        time.sleep(0.1)
    assert done["ExportStatus"] == "COMPLETED"
    assert "ExportManifest" not in done and "ExportTime" not in done
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="exports", Prefix="p/run/")["Contents"]]
    assert len(keys) == 1 and "/AWSDynamoDB/" in keys[0] and "/data/" in keys[0] and keys[0].endswith(".gz")
    lines = gzip.decompress(s3.get_object(Bucket="exports", Key=keys[0])["Body"].read()).decode().splitlines()
    assert sorted(json.loads(line)["Item"]["k"]["S"] for line in lines) == ["key-0", "key-1", "key-2"]
    # the workaround: the run's own prefix is listed, and the time asked for stands for the export's
    assert export_data_files(s3, done, "p/run") == keys
    assert export_time(done, asked) == asked


def test_the_dynamodb_hooks_resource_client_scans_into_plain_values_its_client_type_into_dynamodb_json(aws_mock):
    """DynamoDBHook(...).conn.meta.client (what claims_cdc.aws.dynamodb_client returns) carries the resource's
    deserialiser: its Scan gives ``{"k": "key-0"}``, not DynamoDB JSON, and the hook (a resource hook) refuses
    get_client_type(). Workaround in ONE place: claims_cdc.aws.dynamodb_json_client (AwsBaseHook with
    client_type="dynamodb") for Scan and BatchGetItem."""
    from airflow.providers.amazon.aws.hooks.dynamodb import DynamoDBHook

    from claims_cdc import aws

    plain = aws.dynamodb_json_client("aws_mock")
    plain.create_table(TableName="T", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                       AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                       BillingMode="PAY_PER_REQUEST")
    plain.put_item(TableName="T", Item={"k": {"S": "key-0"}})
    assert DynamoDBHook(aws_conn_id="aws_mock").conn.meta.client.scan(TableName="T")["Items"] == [{"k": "key-0"}]
    assert plain.scan(TableName="T")["Items"] == [{"k": {"S": "key-0"}}]
    with pytest.raises(LookupError, match="resource_type"):
        DynamoDBHook(aws_conn_id="aws_mock").get_client_type()


@pytest.mark.second_process  # a subprocess that holds 400 MB: server-less, memory-heavy
def test_a_childs_peak_rss_starts_at_its_parents_unless_started_from_a_small_launcher(tmp_path):
    """Workaround: claims_cdc_dev.peak_rss. On Linux ``ru_maxrss`` survives fork and exec: a child of a big
    process reports the parent's resident size as its own peak, so the bench (which holds a whole stream for
    its floors) reported its own size for every drain. Started from the launcher, the child's peak is its own."""
    import subprocess
    import textwrap

    from claims_cdc_dev.bench import PEAK_RSS

    big_parent = textwrap.dedent(f"""
        import json, os, subprocess, sys
        held = bytearray(400 * 2**20)  # 400 MB, touched
        for i in range(0, len(held), 4096):
            held[i] = 1
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        direct = os.wait4(child.pid, 0)[2].ru_maxrss
        subprocess.run([sys.executable, {str(PEAK_RSS)!r}, {str(tmp_path / "peak.json")!r}, "--",
                        sys.executable, "-c", "pass"], check=True)
        print(json.dumps({{"direct_kib": direct}}))
    """)
    done = subprocess.run([sys.executable, "-c", big_parent], capture_output=True, text=True, check=True)
    direct_mib = json.loads(done.stdout)["direct_kib"] / 1024
    launched_mib = json.loads((tmp_path / "peak.json").read_text())["peak_rss_kib"] / 1024
    assert direct_mib > 400  # "python -c pass" does not need 400 MB: the parent's size, inherited
    assert launched_mib < 100


def test_the_venv_holds_bytecode_which_uv_writes_only_when_asked():
    """Workaround: ``make install`` passes ``--compile-bytecode`` to ``uv pip install`` (the Makefile's stamp
    recipe). uv, unlike pip, installs no bytecode by default; with ``PYTHONDONTWRITEBYTECODE`` set (as on the
    development machine) none is ever written, and every Airflow process compiled its imports from source:
    ``import airflow`` took 6.5 s instead of 2.7 s, on every ``airflow`` command and every task process."""
    import importlib.util
    from pathlib import Path

    import airflow.sdk.definitions.dag
    import pyarrow

    for module in (airflow.sdk.definitions.dag, pyarrow):
        assert Path(importlib.util.cache_from_source(module.__file__)).exists(), module.__name__

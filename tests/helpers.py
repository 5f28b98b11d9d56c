"""Shared helpers for tests that run against the local stack."""

from __future__ import annotations

import json
import socket
import time
from typing import Any, NamedTuple

from claims_cdc.transform import change_order, content_hash

SEED_COLUMNS_SQL = "claimId, eventName, claimStatus, cdc_change_order"
#: An hour before this test session, in microseconds: a plausible ApproximateCreationDateTime for records
#: put into Kinesis now (the transform dead-letters a change time outside arrival minus the stream's
#: 24 h retention .. arrival plus the clock skew).
RECENT_MICROS = int(time.time() * 1_000_000) - 3_600_000_000


def examples(scale: float) -> int:
    """Examples for a property test: ``scale`` times the loaded Hypothesis profile's count (conftest)."""
    from hypothesis import settings as hypothesis_settings

    return max(1, round(hypothesis_settings.default.max_examples * scale))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def row(claim_id: str, event: str, micros: int, sequence: str = "1", status: str = "Submitted",
        **extra: Any) -> dict[str, Any]:
    """A transformed row as the transform task writes it (for warehouse-level tests)."""
    from claims_cdc.mapping import load_mapping
    from claims_cdc.settings import INCLUDE_DIR

    mapping = load_mapping(INCLUDE_DIR / "mapping" / "claims.json")
    names = mapping.names
    data: dict[str, Any] = {name: None for name in names}
    data.update(
        eventName=event,
        eventCreationUnixTime=str(micros),
        claimId=claim_id,
        claimStatus=status,
        cdc_event_id=f"{claim_id}-{event}-{micros}-{sequence}",
        cdc_shard_id="shardId-000000000000",
        cdc_sequence_number=sequence,
        cdc_change_order=change_order(micros, sequence),
    )
    # The image the row's values come from, as the transform keeps it (canonical JSON text): the content
    # hash covers event, time, Keys and images, so two rows that differ in a value differ in their image.
    image = json.dumps({"claim_id": {"S": claim_id}, "claimStatus": {"S": status}}, sort_keys=True,
                       separators=(",", ":"))
    data["cdc_old_image" if event == "REMOVE" else "cdc_new_image"] = image
    data.update(extra)
    data["cdc_content_hash"] = content_hash(data, mapping)
    return data


def query(snow, sql: str, params: list | None = None) -> list[tuple]:
    cursor = snow.connection.cursor()
    cursor.execute(sql, params)
    return cursor.fetchall()


def table(settings, name: str) -> str:
    return f"{settings.database}.{settings.schema}.{name}"


def destination(snow, settings) -> dict[str, tuple]:
    """claimId -> (eventName, claimStatus) of every destination row."""
    rows = query(snow, f"SELECT claimId, eventName, claimStatus FROM {table(settings, settings.dest_table)}")
    return {r[0]: (r[1], r[2]) for r in rows}


def count(snow, settings, name: str, where: str = "") -> int:
    return int(query(snow, f"SELECT COUNT(*) FROM {table(settings, name)} {where}")[0][0])


def dynamodb_json(item: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {k: serializer.serialize(v) for k, v in item.items()}


def kinesis_doc(event: str, claim: dict[str, Any], micros: int, event_id: str,
                old: dict[str, Any] | None = None) -> bytes:
    """A record exactly as Kinesis Data Streams for DynamoDB writes it."""
    change: dict[str, Any] = {
        "ApproximateCreationDateTime": micros,
        "Keys": {"claim_id": {"S": claim["claim_id"]}},
        "SizeBytes": 100,
    }
    if event != "REMOVE":
        change["NewImage"] = dynamodb_json(claim)
    if old is not None or event == "REMOVE":
        change["OldImage"] = dynamodb_json(old or claim)
    doc = {
        "awsRegion": "us-east-1",
        "eventID": event_id,
        "eventName": event,
        "userIdentity": None,
        "recordFormat": "application/json",
        "tableName": "InsuranceClaims",
        "dynamodb": change,
        "eventSource": "aws:dynamodb",
    }
    return json.dumps(doc).encode()


def wait_for_stream(kinesis, stream: str, expected: int, seconds: float = 20, settle: bool = False) -> int:
    """Wait until the stream holds at least ``expected`` records (the forwarder is asynchronous).

    With ``settle``, also wait until the count stops growing (chaos mode adds duplicates and releases
    held-back records on a later poll).
    """
    deadline = time.monotonic() + seconds
    total = previous = -1
    while time.monotonic() < deadline:
        total = 0
        for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
            iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            total += len(kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"])
        if total >= expected and (not settle or total == previous):
            return total
        previous = total
        time.sleep(0.5 if settle else 0.2)
    return total


def run_dag(**conf: Any):
    """One ``claims_cdc`` run through ``dag.test()``: parses dags/ afresh, returns the finished DagRun."""
    return run_dag_named("claims_cdc", **conf)


def run_dag_named(dag_id: str, **conf: Any):
    """One run of the DAG ``dag_id`` through ``dag.test()`` (``conf`` fills its Params)."""
    from airflow.dag_processing.dagbag import DagBag

    from claims_cdc.settings import PROJECT_ROOT

    fresh_metadata_connections()
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return without_deadline(bag.get_dag(dag_id)).test(run_conf=conf or None)


def without_deadline(dag):
    """The DAG without its Deadline Alert, for ``dag.test()``.

    Platform surprise (tests/platform/test_platform_quirks.py): ``dag.test()`` builds its scheduler DAG by
    serializing the DAG in memory, so no deadline_alert row is written and ``deadline`` holds encoded alerts
    instead of their row ids; when the run *succeeds*, ``DagRun.update_state`` looks each one up by id and
    fails (``'dict' object has no attribute 'hex'``). The scheduler (``make up``) writes the rows and works.
    """
    dag.deadline = None
    return dag


def dynamodb_view(table) -> dict[str, tuple]:
    """claimId -> (claimStatus, paymentStatus, totalCharge, patient's first name) of every DynamoDB item,
    read with a plain Scan (not the pipeline's code): what a person compares the destination with."""
    items, kwargs = [], {"ConsistentRead": True}
    while True:
        page = table.scan(**kwargs)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return {i["claim_id"]: (i.get("claimStatus"), i.get("paymentStatus"), float(i["totalCharge"]),
                            i.get("patient", {}).get("firstName")) for i in items}


def destination_view(snow, settings) -> dict[str, tuple]:
    """The same four values of every destination row, claimId -> tuple."""
    rows = query(snow, f"SELECT claimId, claimStatus, paymentStatus, totalCharge, patientFirstName "
                       f"FROM {table(settings, settings.dest_table)}")
    return {r[0]: (r[1], r[2], None if r[3] is None else float(r[3]), r[4]) for r in rows}


def fresh_metadata_connections() -> None:
    """Close this process's pooled connections to Airflow's SQLite database before using it again.

    Platform surprise: after another process (the `airflow dags test` CLI, tests/e2e/test_real_delivery.py)
    wrote the same SQLite file, a connection this process pooled earlier can read it as "database disk image
    is malformed". Fresh connections read it whole. (Production metadata databases are not SQLite.)
    """
    from airflow import settings

    if settings.engine is not None:
        settings.engine.dispose()


def task_states(dag_run) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(
            TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
        ).all()
        return {ti.task_id: str(ti.state.value if hasattr(ti.state, "value") else ti.state) for ti in tis}


class Read(NamedTuple):
    """What a reader test saw: the records in read order and each shard's last progress."""

    records: list
    shards: list


def read_run(client, stream: str, checkpoints: dict, max_records: int, page_limit: int, started_at=None) -> Read:
    """One run's reading, as the DAG does it: the plan, then each planned shard read to its share."""
    from claims_cdc import kinesis_reader

    records, shards = [], []
    for task in kinesis_reader.plan_shards(client, stream, checkpoints, max_records):
        pages = list(kinesis_reader.read_shard(client, stream, task, page_limit, started_at))
        records.extend(record for page, _progress in pages for record in page)
        shards.append(pages[-1][1])
    return Read(records, shards)


def read_runs(client, stream: str, checkpoints: dict, max_records: int, page_limit: int) -> Read:
    """Runs one after another, each from the positions the last one reached (as staging commits them),
    until a run reads nothing and retires no shard. Records in read order; each shard's last progress."""
    from claims_cdc.kinesis_reader import Checkpoint

    checkpoints = dict(checkpoints)
    records, last = [], {}
    while True:
        run = read_run(client, stream, checkpoints, max_records, page_limit)
        records.extend(run.records)
        retired = False
        for progress in run.shards:
            last[progress.shard_id] = progress
            retired = retired or progress.drained
            checkpoints[progress.shard_id] = Checkpoint(progress.shard_id, progress.end, closed=progress.drained)
        if not run.records and not retired:
            return Read(records, list(last.values()))

"""A stream built by hand, as Kinesis may deliver it: duplicated, reordered and split mid-way, produced
directly into Kinesis (no forwarder), drained through `airflow dags test claims_cdc` (the CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import boto3
import pytest

from claims_cdc import aws, pipeline, warehouse
from helpers import RECENT_MICROS, count, kinesis_doc, query, table

pytestmark = pytest.mark.stack

T = RECENT_MICROS  # microseconds, an hour ago


def claim(claim_id: str, status: str) -> dict:
    return {"claim_id": claim_id, "claimStatus": status, "totalCharge": Decimal("100.5"), "memberId": "MBR1"}


def airflow_dags_test() -> subprocess.CompletedProcess:
    airflow = Path(sys.executable).with_name("airflow")
    return subprocess.run([str(airflow), "dags", "test", "claims_cdc", "-c", json.dumps({"sensor_timeout": 3})],
                          capture_output=True, text=True, check=False, timeout=300)


def test_duplicated_reordered_and_split_stream_drains_to_dynamodb_state(settings, snow, mapping, stack,
                                                                        clean_pipeline):
    # DynamoDB's final state, written with plain boto3: the truth the destination must equal.
    final = {"CLM-A": claim("CLM-A", "Paid"), "CLM-C": claim("CLM-C", "Resubmitted"),
             "CLM-D": claim("CLM-D", "Submitted")}
    dynamodb = boto3.resource("dynamodb", endpoint_url=stack.endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
    for item in final.values():
        dynamodb.Table(settings.dynamodb_table).put_item(Item=item)

    kinesis = aws.kinesis_client(settings.aws_conn_id)
    stream = settings.kinesis_stream
    parent = min(kinesis.list_shards(StreamName=stream)["Shards"], key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
    mid = (int(parent["HashKeyRange"]["EndingHashKey"]) + 1) // 2
    low, high = "1", str(mid + 1)  # both in the parent's range; after the split, one child each

    def put(key_hash, event, item, micros, event_id, old=None):
        kinesis.put_record(StreamName=stream, PartitionKey=item["claim_id"], ExplicitHashKey=key_hash,
                           Data=kinesis_doc(event, item, micros, event_id, old=old))

    a1, a2, a3 = claim("CLM-A", "Submitted"), claim("CLM-A", "Approved"), claim("CLM-A", "Paid")
    b1, c1, c2 = claim("CLM-B", "Submitted"), claim("CLM-C", "Submitted"), claim("CLM-C", "In Review")
    # On the parent shard, before the split:
    put(low, "MODIFY", a2, T + 2, "a2", old=a1)            # arrives before the INSERT it follows
    put(low, "INSERT", a1, T + 1, "a1")
    put(high, "INSERT", b1, T + 1, "b1")
    put(high, "INSERT", b1, T + 1, "b1")                   # re-delivery, same eventID
    put(low, "INSERT", c1, T + 2, "c1")
    put(low, "REMOVE", c1, T + 4, "c-remove")
    put(low, "MODIFY", a2, T + 2, "a2-resent", old=a1)     # the same change re-sent under a new eventID
    kinesis.split_shard(StreamName=stream, ShardToSplit=parent["ShardId"], NewStartingHashKey=str(mid))
    # On the children, after the split:
    put(low, "MODIFY", a3, T + 3, "a3", old=a2)
    put(low, "MODIFY", c2, T + 3, "c2-late", old=c1)       # older than the REMOVE: must not resurrect CLM-C
    put(high, "REMOVE", b1, T + 5, "b-remove")
    put(low, "INSERT", final["CLM-C"], T + 6, "c-again")   # a newer re-insert: CLM-C comes back
    put(high, "INSERT", final["CLM-D"], T + 7, "d1")

    # Drained through the CLI: as many runs as the stream needs (the split's children after their parent),
    # until no shard has a record after its checkpoint. (That an idle run ends skipped, not failed, is
    # tests/e2e/test_claims_cdc_dag.py's; one more CLI process here would cost half a minute.)
    for _ in range(4):
        done = airflow_dags_test()
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        if not pipeline.stream_has_records(settings):
            break
    assert not pipeline.stream_has_records(settings)

    dest = dict(query(snow, f"SELECT claimId, claimStatus FROM {table(settings, settings.dest_table)}"))
    assert dest == {claim_id: item["claimStatus"] for claim_id, item in final.items()}

    history = query(snow, f"SELECT claimId, eventName, eventCreationUnixTime, claimStatus "
                          f"FROM {table(settings, settings.history_table)}")
    assert sorted(history) == sorted([
        ("CLM-A", "INSERT", str(T + 1), "Submitted"), ("CLM-A", "MODIFY", str(T + 2), "Approved"),
        ("CLM-A", "MODIFY", str(T + 3), "Paid"),
        ("CLM-B", "INSERT", str(T + 1), "Submitted"), ("CLM-B", "REMOVE", str(T + 5), "Submitted"),
        ("CLM-C", "INSERT", str(T + 2), "Submitted"), ("CLM-C", "MODIFY", str(T + 3), "In Review"),
        ("CLM-C", "REMOVE", str(T + 4), "Submitted"), ("CLM-C", "INSERT", str(T + 6), "Resubmitted"),
        ("CLM-D", "INSERT", str(T + 7), "Submitted"),
    ])
    assert count(snow, settings, settings.cdc_table) == 0

    checkpoints = warehouse.read_checkpoints(snow, settings, mapping)
    assert checkpoints[parent["ShardId"]].closed is True
    last = query(snow, f"SELECT dynamodb_count, snowflake_count, status FROM "
                       f"{table(settings, settings.reconciliation_table)} ORDER BY checked_at DESC LIMIT 1")
    assert last == [(3, 3, "MATCH")]

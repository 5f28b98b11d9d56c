"""`python -m claims_cdc.admin status` (what `make status` runs) after real runs on the local stack: every
section shows the numbers the warehouse and the stream hold, and no record value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from claims_cdc import aws, warehouse
from claims_cdc.settings import PROJECT_ROOT
from helpers import RECENT_MICROS, query, row, run_dag, table
from poison import change, encode

pytestmark = pytest.mark.stack

#: ExplicitHashKeys that put a record on shard 0 (lower half of the hash key range) or shard 1 (upper half).
SHARD_KEYS = {"shardId-000000000000": "1", "shardId-000000000001": str(2**127 + 1)}


def _status(*args: str) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "plugins")}
    done = subprocess.run([sys.executable, "-m", "claims_cdc.admin", "status", *args], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    return done.returncode, done.stdout


def test_status_shows_each_shards_lag_the_last_batch_backlog_dead_letters_and_reconciliation(
        settings, mapping, snow, clean_pipeline):
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    last = {}

    def put(shard: str, claim_id: str, data: bytes) -> None:
        last[shard] = kinesis.put_record(StreamName=settings.kinesis_stream, PartitionKey=claim_id,
                                         ExplicitHashKey=SHARD_KEYS[shard], Data=data)["SequenceNumber"]

    shard0, shard1 = SHARD_KEYS
    for i in range(5):
        put(shard0, f"STATUS-A{i}", encode(change(f"STATUS-A{i}", RECENT_MICROS + i)))
    put(shard0, "STATUS-BAD", b"{not json")
    for i in range(2):
        put(shard1, f"STATUS-B{i}", encode(change(f"STATUS-B{i}", RECENT_MICROS + 10 + i)))

    run = run_dag()
    assert run.state == "success"

    code, out = _status("--json")
    assert code == 0, out
    doc = json.loads(out)["sections"]
    shards = {s["shard_id"]: s for s in doc["shards"]}
    for shard in SHARD_KEYS:  # caught up: positioned at the last record each shard holds
        assert shards[shard]["state"] == "open"
        assert shards[shard]["position"] == last[shard]
        assert (shards[shard]["records_behind"], shards[shard]["seconds_behind"]) == (0, 0.0)
    batch = doc["last_batch"]
    assert (batch["dag_run_id"], batch["status"]) == (run.run_id, "MERGED") and batch["merged_at"]
    assert (batch["records_read"], batch["rows_staged"], batch["duplicates_dropped"], batch["rows_rejected"],
            batch["history_rows"]) == (8, 7, 0, 1, 7)
    assert doc["staging_backlog"]["rows"] == 0
    reasons = query(snow, f"SELECT reason FROM {table(settings, settings.rejected_table)}")
    assert len(reasons) == 1 and "record data is not JSON" in reasons[0][0]
    assert doc["dead_letters"] == [{"reason": reasons[0][0], "records": 1, "waiting": 1}]
    reconciliation = doc["last_reconciliation"]  # nothing was written to DynamoDB: 7 rows too many
    assert (reconciliation["dag_run_id"], reconciliation["status"], reconciliation["dynamodb_count"],
            reconciliation["snowflake_count"], reconciliation["difference"]) == (run.run_id, "MISMATCH", 0, 7, 7)
    # The run's new dead letter opened the dead-letter incident (alerts_checked), listed with its summary.
    dead_letter_alerts = [a for a in doc["open_alerts"] if a["kind"] == "dead_letters"]
    assert len(dead_letter_alerts) == 1 and dead_letter_alerts[0]["opened_at"]

    # Now records wait on both shards, unread, and a batch is staged but not merged.
    positions = dict(last)
    for i in range(3):
        put(shard0, f"STATUS-C{i}", encode(change(f"STATUS-C{i}", RECENT_MICROS + 20 + i)))
    put(shard1, "STATUS-D0", encode(change("STATUS-D0", RECENT_MICROS + 30)))
    staged_id = f"status-test-{uuid.uuid4().hex}"
    oldest = RECENT_MICROS + 40
    warehouse.stage_batch(snow, settings, mapping, batch_id=staged_id, dag_run_id="status-test", shards=[],
                          records_read=2, rows=[row("STATUS-E0", "INSERT", oldest + 5, "2"),
                                                row("STATUS-E1", "INSERT", oldest, "1")], rejected=[])
    time.sleep(1.5)  # the unread records age

    code, out = _status("--json")
    assert code == 0, out
    doc = json.loads(out)["sections"]
    shards = {s["shard_id"]: s for s in doc["shards"]}
    assert {s: (shards[s]["records_behind"], shards[s]["records_behind_bounded"]) for s in shards} == {
        shard0: (3, False), shard1: (1, False)}
    assert all(shards[s]["position"] == positions[s] for s in shards), "status moved no checkpoint"
    assert all(shards[s]["seconds_behind"] >= 1.5 for s in shards)
    backlog = doc["staging_backlog"]
    assert (backlog["rows"], backlog["claimed_by_merge"]) == (2, 0)
    assert backlog["oldest_change_at"] == _iso(oldest)
    assert backlog["oldest_change_age_seconds"] > 3_000  # the rows' change time is an hour back
    batch = doc["last_batch"]
    assert (batch["batch_id"], batch["status"], batch["merged_at"], batch["records_read"], batch["rows_staged"]) == (
        staged_id, "STAGED", None, 2, 2)

    # A bound on the count says "at least".
    _, out = _status("--json", "--bound", "2")
    bounded = {s["shard_id"]: s for s in json.loads(out)["sections"]["shards"]}
    assert (bounded[shard0]["records_behind"], bounded[shard0]["records_behind_bounded"]) == (2, True)

    code, text = _status()
    assert code == 0
    assert f"{shard0}   open                  3" in text and f"{shard1}   open                  1" in text
    assert "2 rows waiting to be merged" in text
    assert f"{staged_id} (STAGED), run status-test" in text and "not merged yet" in text
    assert f"        1        1  {reasons[0][0]}" in text
    assert "MISMATCH, destination 7 rows, DynamoDB 0 items (difference 7)" in text
    assert "\nopen alerts" in text and "\n  dead_letters   since " in text
    for value in ("STATUS-", "Ada", "Lovelace", "555-0100", "Springfield"):  # claim ids and PHI of the records
        assert value not in text and value not in out, value


def _iso(micros: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(micros / 1_000_000, tz=UTC).isoformat()


def test_report_prints_the_report_alone_on_stdout(settings, snow, clean_pipeline):
    """`admin report` (dead letters by reason, unmapped attributes) is pipeable: the connector's and the hooks'
    log lines go to stderr, as for `status --json`; the report holds counts and reasons, no value."""
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    kinesis.put_record(StreamName=settings.kinesis_stream, PartitionKey="REPORT-BAD", Data=b"{not json")
    assert run_dag().state == "success"

    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "plugins")}
    done = subprocess.run([sys.executable, "-m", "claims_cdc.admin", "report"], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    reasons = query(snow, f"SELECT reason FROM {table(settings, settings.rejected_table)}")
    assert lines[:2] == ["dead letters by reason (records, waiting for a re-drive):",
                         f"  {1:>8} {1:>8}  {reasons[0][0]}"]
    assert lines[2].startswith("attributes the mapping does not know") and len(lines) == 4
    assert "Snowflake Connector" in done.stderr  # the log lines are still there, on stderr
    assert "REPORT-BAD" not in done.stdout + done.stderr

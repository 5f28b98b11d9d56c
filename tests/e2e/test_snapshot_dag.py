"""End to end: the claims_cdc_snapshot DAG (dag.test()) against the local stack's servers, with claims_cdc."""

from __future__ import annotations

import json
import threading
import time

import pytest

from claims_cdc import aws
from claims_cdc_dev import generator
from claims_cdc_dev import stack as local_stack
from helpers import (
    count,
    destination_view,
    dynamodb_view,
    query,
    run_dag,
    run_dag_named,
    table,
    wait_for_stream,
)

pytestmark = pytest.mark.stack


@pytest.fixture
def streaming_enabled_later(stack, settings, clean_pipeline, aws_clients):
    """Returns a function that enables the table's Kinesis streaming destination *now*: changes made
    before it never reach the stream (as for claims that existed before the destination was enabled)."""
    from claims_cdc_dev.forwarder import Forwarder

    def enable() -> None:
        ddb, kinesis = aws_clients
        # The forwarder's positions move to the end of the table's DynamoDB stream; what it forwarded on the
        # way is dropped with the Kinesis stream, made anew (empty) at once.
        Forwarder(settings.aws_conn_id, settings.dynamodb_table, settings.kinesis_stream,
                  stack.state_dir / "forwarder.json").poll_once()
        kinesis.delete_stream(StreamName=settings.kinesis_stream, EnforceConsumerDeletion=True)
        local_stack.create_table_and_stream(stack, ddb, kinesis)
        assert wait_for_stream(kinesis, settings.kinesis_stream, 1, seconds=1) == 0
        local_stack.start_forwarder(stack, {})  # the test session's environment points it at the stack

    yield enable
    local_stack.stop_forwarder(stack)


def _drain(settings, kinesis, snow, runs: int = 4) -> None:
    """claims_cdc runs until the destination stops changing and the stream has nothing left after it."""
    for _ in range(runs):
        assert run_dag().state == "success"
        pending = query(snow, f"SELECT COUNT(*) FROM {table(settings, settings.cdc_table)}")[0][0]
        if not pending:
            from claims_cdc.pipeline import stream_has_records

            if not stream_has_records(settings):
                return


def test_snapshot_then_claims_cdc_leave_destination_equal_to_dynamodb_with_changes_during_the_snapshot(
        settings, snow, streaming_enabled_later):
    claims = generator.claims_table(settings.aws_conn_id, settings.dynamodb_table)
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    before = generator.ingest(claims, 30, seed=12)  # written while the streaming destination was off
    streaming_enabled_later()
    # Streamed, and older than the snapshot: the snapshot's copy (which already holds it) wins.
    generator.set_status(claims, "", "Appealed", claim_id=before[0])

    live_ids: list[str] = []

    def live_changes() -> None:  # while the snapshot runs: new claims, changed claims, deleted claims
        for step in range(6):
            live_ids.extend(generator.ingest(claims, 2, seed=100 + step))
            generator.set_status(claims, "", f"Live {step}", claim_id=before[1 + step])
            generator.delete(claims, before[10 + step])
            time.sleep(0.5)

    writer = threading.Thread(target=live_changes)
    writer.start()
    try:
        run = run_dag_named("claims_cdc_snapshot", method="export")
    finally:
        writer.join()
    assert run.state == "success"
    wait_for_stream(kinesis, settings.kinesis_stream, 1 + 6 * 4, settle=True)
    _drain(settings, kinesis, snow)

    expected = dynamodb_view(claims)
    assert len(expected) == 30 + 12 - 6
    assert destination_view(snow, settings) == expected
    # Deleted claims stay deleted, whichever came first: the snapshot or their REMOVE.
    assert not set(before[10:16]) & set(destination_view(snow, settings))
    # The batch log keeps what the snapshot did: mode, method, time, parts with counts; no checkpoint moved.
    logged = query(snow, f"SELECT positions, records_read, rows_staged FROM {table(settings, settings.batch_table)} "
                         "WHERE positions LIKE '%\"mode\":\"snapshot\"%'")
    assert len(logged) == 1
    positions, records_read, rows_staged = logged[0]
    description = json.loads(positions)
    assert description["method"] == "export" and description["as_of"] and description["parts"]
    assert int(records_read) == sum(p["records"] for p in description["parts"]) >= 30 - 6
    assert int(rows_staged) == int(records_read)
    assert not query(snow, f"SELECT 1 FROM {table(settings, settings.checkpoint_table)} "
                           "WHERE shard_id = 'snapshot'")


def test_snapshot_by_parallel_scan_twice_leaves_the_destination_and_its_history_rows_as_they_were(
        settings, snow, streaming_enabled_later):
    claims = generator.claims_table(settings.aws_conn_id, settings.dynamodb_table)
    generator.ingest(claims, 25, seed=21)
    streaming_enabled_later()

    assert run_dag_named("claims_cdc_snapshot", method="scan", segments=3).state == "success"
    first = destination_view(snow, settings)
    assert first == dynamodb_view(claims) and len(first) == 25
    stamps = query(snow, f"SELECT claimId, cdc_change_order FROM {table(settings, settings.dest_table)}")

    assert run_dag_named("claims_cdc_snapshot", method="scan", segments=2).state == "success"
    assert destination_view(snow, settings) == first
    # A later snapshot is a newer reading of the same items: the destination's values stay the same.
    assert len(query(snow, f"SELECT claimId FROM {table(settings, settings.dest_table)}")) == len(stamps)
    assert count(snow, settings, settings.cdc_table) == 0  # everything staged was merged
    assert count(snow, settings, settings.checkpoint_table) == 0  # no checkpoint was ever written


def test_claim_deleted_after_the_export_does_not_come_back_when_its_remove_merged_first(
        settings, snow, mapping, streaming_enabled_later):
    """The export has the claim; the claim's REMOVE (after the export) is merged by claims_cdc before the
    snapshot's rows are: the tombstone is newer than the snapshot's time, so the claim stays deleted."""
    from datetime import UTC, datetime

    from claims_cdc import snapshot

    claims = generator.claims_table(settings.aws_conn_id, settings.dynamodb_table)
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    ids = generator.ingest(claims, 5, seed=33)
    streaming_enabled_later()
    run_id = f"test.snapshot-{time.time_ns()}"
    parts = snapshot.plan_snapshot(settings, run_id, "export", 1, datetime.now(UTC))
    time.sleep(0.01)
    generator.delete(claims, ids[0])  # after the export's time
    wait_for_stream(kinesis, settings.kinesis_stream, 1)
    _drain(settings, kinesis, snow)
    assert count(snow, settings, settings.tombstone_table) == 1

    read = [snapshot.read_snapshot_part(settings, part) for part in parts]
    assert sum(p["rows"] for p in read) == 5  # the export still holds the deleted claim
    staged = snapshot.stage_parts(settings, read, run_id, snapshot.snapshot_description(read))
    assert staged["rows_staged"] == 5
    snapshot.merge_side_batch(settings, staged, run_id)
    assert set(destination_view(snow, settings)) == set(ids[1:])
    assert destination_view(snow, settings) == dynamodb_view(claims)

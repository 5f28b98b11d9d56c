"""A side batch (snapshot) interleaved step by step with a live claims_cdc run, on the local stack."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from claims_cdc import aws, batch_files, pipeline, snapshot
from claims_cdc_dev import generator
from helpers import count, destination_view, dynamodb_view, query, table, wait_for_stream

pytestmark = pytest.mark.stack


def test_a_live_run_and_a_snapshot_interleaved_keep_each_others_rows_files_and_checkpoints(settings, snow, forwarder):
    claims = generator.claims_table(settings.aws_conn_id, settings.dynamodb_table)
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    ids = generator.ingest(claims, 10, seed=61)
    # Under load the forwarder lags: wait for every record (wait_for_stream returns what it saw at its deadline).
    assert wait_for_stream(kinesis, settings.kinesis_stream, 10, seconds=90, settle=True) >= 10

    live = pipeline.read_shards(settings, pipeline.plan(settings, "live-1", 1_000, None))
    parts = snapshot.plan_snapshot(settings, "snap-1", "scan", 2, datetime.now(UTC))
    read = [snapshot.read_snapshot_part(settings, part) for part in parts]
    # A later live run's sweeper runs now: every live batch planned before it counts as settled.
    swept = pipeline.remove_batch_files(settings, None, datetime.now(UTC))
    assert live[0]["batch_id"] in swept["batch_ids"] and read[0]["batch_id"] not in swept["batch_ids"]
    side = snapshot.side_settings(settings)
    assert all(batch_files.batch_exists(side, batch_files.shard_file(p["uri"], "rows", p["part_id"]))
               for p in read if p["rows"])

    # The snapshot stages first, then a live run re-reads from the (unmoved) checkpoints and stages.
    staged_snapshot = snapshot.stage_parts(settings, read, "snap-1", snapshot.snapshot_description(read))
    assert staged_snapshot["rows_staged"] == 10
    assert count(snow, settings, settings.checkpoint_table) == 0
    generator.set_status(claims, "", "Appealed", claim_id=ids[0])  # after the snapshot's time
    assert wait_for_stream(kinesis, settings.kinesis_stream, 11, seconds=90, settle=True) >= 11
    staged_live = pipeline.stage(settings, pipeline.read_shards(settings, pipeline.plan(settings, "live-2", 1_000, None)),
                                 "live-2")
    assert staged_live["rows_staged"] == 11

    # The live merge takes both batches' rows; the snapshot's merge finds nothing left, and that is fine.
    live_merge = pipeline.merge(settings, staged_live, "live-2")
    assert live_merge["batches"] == 2
    assert snapshot.merge_side_batch(settings, staged_snapshot, "snap-1")["batches"] == 0
    assert destination_view(snow, settings) == dynamodb_view(claims)
    assert destination_view(snow, settings)[ids[0]][0] == "Appealed"  # the stream's newer change won
    statuses = dict(query(snow, f"SELECT batch_id, status FROM {table(settings, settings.batch_table)}"))
    assert statuses == {staged_snapshot["batch_id"]: "MERGED", staged_live["batch_id"]: "MERGED"}
    assert count(snow, settings, settings.checkpoint_table) >= 1  # moved by the live run alone

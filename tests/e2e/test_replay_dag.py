"""End to end: the claims_cdc_replay DAG (dag.test()) against the local stack's servers, after claims_cdc."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from claims_cdc import aws
from claims_cdc_dev import generator
from helpers import destination_view, dynamodb_view, query, run_dag, run_dag_named, table, wait_for_stream

pytestmark = pytest.mark.stack


def _everything(snow, settings, name: str, order: str = "claimId, cdc_change_order") -> list[tuple]:
    """Every row of a table, every column, in a stable order: what "unchanged" is checked against."""
    return query(snow, f"SELECT * FROM {table(settings, name)} ORDER BY {order}")


def _merged_history(settings, snow, forwarder_claims) -> tuple[list[str], datetime]:
    """Claims inserted, changed and deleted, streamed and merged by claims_cdc; returns their ids and the time
    between the last change and the delete."""
    claims = forwarder_claims
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    ids = generator.ingest(claims, 12, seed=41)
    generator.set_status(claims, "", "Appealed", claim_id=ids[0])
    generator.set_status(claims, "", "Paid", claim_id=ids[1])
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    generator.delete(claims, ids[2])
    wait_for_stream(kinesis, settings.kinesis_stream, 15, settle=True)
    assert run_dag().state == "success"
    assert destination_view(snow, settings) == dynamodb_view(claims)
    return ids, between


def test_replay_of_the_last_hour_leaves_destination_and_history_unchanged(settings, snow, forwarder):
    claims = generator.claims_table(settings.aws_conn_id, settings.dynamodb_table)
    _merged_history(settings, snow, claims)
    destination = _everything(snow, settings, settings.dest_table)
    history = _everything(snow, settings, settings.history_table)
    tombstones = _everything(snow, settings, settings.tombstone_table, "claimId")
    checkpoints = _everything(snow, settings, settings.checkpoint_table, "shard_id")

    run = run_dag_named("claims_cdc_replay", mode="stream")  # from_time empty: an hour before the run
    assert run.state == "success"

    assert _everything(snow, settings, settings.dest_table) == destination
    assert _everything(snow, settings, settings.history_table) == history
    assert _everything(snow, settings, settings.tombstone_table, "claimId") == tombstones
    assert _everything(snow, settings, settings.checkpoint_table, "shard_id") == checkpoints  # live ones unmoved
    assert query(snow, f"SELECT COUNT(*) FROM {table(settings, settings.cdc_table)}")[0][0] == 0
    logged = query(snow, f"SELECT positions, records_read, history_rows FROM {table(settings, settings.batch_table)} "
                         "WHERE positions LIKE '%\"mode\":\"replay\"%'")
    assert len(logged) == 1
    positions, records_read, history_rows = logged[0]
    description = json.loads(positions)
    assert description["from"] and {s["shard_id"] for s in description["shards"]} == {
        s["ShardId"] for s in aws.kinesis_client(settings.aws_conn_id).list_shards(
            StreamName=settings.kinesis_stream)["Shards"]}
    assert int(records_read) == 15 and int(history_rows) == 0  # every record re-read, none new to the history


def test_replay_of_one_shard_restores_a_row_deleted_by_hand_and_reads_only_that_shard(settings, snow, forwarder):
    claims = generator.claims_table(settings.aws_conn_id, settings.dynamodb_table)
    ids, _ = _merged_history(settings, snow, claims)
    victim = ids[5]
    shard = query(snow, f"SELECT cdc_shard_id FROM {table(settings, settings.dest_table)} WHERE claimId = ?",
                  [victim])[0][0]
    query(snow, f"DELETE FROM {table(settings, settings.dest_table)} WHERE claimId = ?", [victim])

    assert run_dag_named("claims_cdc_replay", mode="stream", shards=[shard]).state == "success"
    assert destination_view(snow, settings) == dynamodb_view(claims)
    positions = json.loads(query(snow, f"SELECT positions FROM {table(settings, settings.batch_table)} "
                                       "WHERE positions LIKE '%\"mode\":\"replay\"%'")[0][0])
    assert [s["shard_id"] for s in positions["shards"]] == [shard]


def test_rebuild_from_history_restores_the_destination_now_and_as_of_a_time_before_a_delete(settings, snow, forwarder):
    claims = generator.claims_table(settings.aws_conn_id, settings.dynamodb_table)
    ids, between = _merged_history(settings, snow, claims)
    now_view = destination_view(snow, settings)
    dest = table(settings, settings.dest_table)
    query(snow, f"DELETE FROM {dest} WHERE claimId = ?", [ids[3]])
    query(snow, f"UPDATE {dest} SET claimStatus = 'Tampered' WHERE claimId = ?", [ids[4]])

    assert run_dag_named("claims_cdc_replay", mode="rebuild").state == "success"
    assert destination_view(snow, settings) == now_view == dynamodb_view(claims)

    assert run_dag_named("claims_cdc_replay", mode="rebuild", as_of=between.isoformat()).state == "success"
    then = destination_view(snow, settings)
    assert set(then) == set(now_view) | {ids[2]}  # deleted after `between`: back as it was then
    assert {k: v for k, v in then.items() if k != ids[2]} == now_view
    assert query(snow, f"SELECT COUNT(*) FROM {table(settings, settings.tombstone_table)}")[0][0] == 0
    logged = [json.loads(p) for (p,) in query(snow, f"SELECT positions FROM {table(settings, settings.batch_table)} "
                                                   "WHERE status = 'REBUILT' ORDER BY staged_at")]
    assert [entry["mode"] for entry in logged] == ["rebuild", "rebuild"]
    assert logged[1]["as_of"] == between.isoformat() and logged[1]["destination_rows"] == 12


def test_redrive_with_no_dead_letters_is_logged_with_its_counts(settings, snow, clean_pipeline):
    assert run_dag_named("claims_cdc_replay", mode="redrive", redrive_limit=5).state == "success"
    logged = query(snow, f"SELECT batch_id, positions FROM {table(settings, settings.batch_table)}")
    assert len(logged) == 1 and logged[0][0].startswith("redrive-")
    assert json.loads(logged[0][1]) == {"mode": "redrive", "limit": 5, "redriven": 0}

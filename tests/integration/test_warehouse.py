"""Staging, merge and clean-up SQL against the local fakesnow server (through ClaimsSnowflakeHook)."""

from __future__ import annotations

import pytest

from claims_cdc import warehouse
from claims_cdc.transform import content_hash
from helpers import count, destination, query, row, table

pytestmark = pytest.mark.stack


def stage(snow, settings, mapping, batch_id, rows, start=None, end="9", rejected=()):
    shards = [{"shard_id": "shardId-000000000000", "parent_shard_ids": [], "start": start, "end": end,
               "records": len(rows), "drained": False}]
    return warehouse.stage_batch(snow, settings, mapping, batch_id=batch_id, dag_run_id="test", shards=shards,
                                 records_read=len(rows) + len(rejected), rows=list(rows), rejected=list(rejected))


def test_setup_skips_only_account_objects_and_masking_on_the_emulator(snow, settings, mapping, clean_pipeline):
    skipped = warehouse.run_setup(snow, settings, mapping)
    assert skipped == ["create_role", "create_warehouse", "grant_warehouse", "grant_database", "grant_schema",
                       "landing_no_time_travel", "create_phi_tag", "create_phi_mask_string",
                       "create_phi_mask_number", "create_phi_mask_variant", "set_phi_tag_policies",
                       "tag_phi_dest_columns", "tag_phi_staging_columns", "tag_phi_landing_columns",
                       "tag_phi_history_columns", "tag_phi_history_images", "tag_phi_dead_letters"]


def test_the_staging_table_holds_no_images_and_setup_drops_those_an_older_version_added(snow, settings, mapping,
                                                                                      clean_pipeline):
    """The images go to the history only; setup upgrades a staging table from before the landing table."""
    name = table(settings, settings.cdc_table)
    snow.connection.cursor().execute(f"ALTER TABLE {name} ADD COLUMN cdc_new_image STRING")
    try:
        warehouse.run_setup(snow, settings, mapping)
        cursor = snow.connection.cursor()
        cursor.execute(f"SELECT * FROM {name} LIMIT 0")
        columns = {c[0].lower() for c in cursor.description}
    finally:
        snow.connection.cursor().execute(f"ALTER TABLE {name} DROP COLUMN IF EXISTS cdc_new_image")
    assert "cdc_new_image" not in columns and "cdc_loaded_at" in columns
    stage(snow, settings, mapping, "b1", [row("A", "INSERT", 1_000, "1")], end="1")
    [(image,)] = query(snow, f"SELECT cdc_new_image:claim_id:S::STRING FROM {table(settings, settings.history_table)}")
    assert image == "A"


def test_staging_moves_checkpoints_and_loads_both_tables_once(snow, settings, mapping, clean_pipeline):
    rows = [row("A", "INSERT", 1_000, "1"), row("B", "INSERT", 2_000, "2")]
    first = stage(snow, settings, mapping, "b1", rows, start=None, end="2")
    again = stage(snow, settings, mapping, "b1", rows, start=None, end="2")

    assert (first.rows_staged, first.history_rows, first.already_staged) == (2, 2, False)
    assert (again.rows_staged, again.already_staged) == (2, True)
    assert count(snow, settings, settings.cdc_table) == 2
    assert count(snow, settings, settings.history_table) == 2
    assert count(snow, settings, settings.landing_table) == 0  # landed, split and deleted in the transaction
    checkpoints = warehouse.read_checkpoints(snow, settings, mapping)
    assert checkpoints["shardId-000000000000"].sequence_number == "2"


def test_a_batch_read_from_a_stale_checkpoint_is_refused(snow, settings, mapping, clean_pipeline):
    stage(snow, settings, mapping, "b1", [row("A", "INSERT", 1_000, "1")], start=None, end="1")
    with pytest.raises(warehouse.CheckpointConflict, match="shardId-000000000000: checkpoint is 1"):
        stage(snow, settings, mapping, "b2", [row("A", "INSERT", 1_000, "1")], start=None, end="1")
    assert count(snow, settings, settings.cdc_table) == 1


def test_history_drops_a_redelivered_event_id(snow, settings, mapping, clean_pipeline):
    insert = row("A", "INSERT", 1_000, "1")
    stage(snow, settings, mapping, "b1", [insert, insert], start=None, end="1")
    stage(snow, settings, mapping, "b2", [insert], start="1", end="2")
    assert count(snow, settings, settings.history_table) == 1


def test_rejected_records_are_kept_with_their_reason(snow, settings, mapping, clean_pipeline):
    bad = {"shard_id": "shardId-000000000000", "sequence_number": "7", "reason": "record data is not JSON",
           "payload": "garbage"}
    stage(snow, settings, mapping, "b1", [], start=None, end="7", rejected=[bad])
    rows = query(snow, f"SELECT batch_id, sequence_number, reason, payload FROM {table(settings, settings.rejected_table)}")
    assert rows == [("b1", "7", "record data is not JSON", "garbage")]
    assert warehouse.read_checkpoints(snow, settings, mapping)["shardId-000000000000"].sequence_number == "7"


def test_several_events_for_one_claim_in_one_batch_merge_to_the_latest(snow, settings, mapping, clean_pipeline):
    stage(snow, settings, mapping, "b1", [
        row("A", "INSERT", 1_000, "1", "Submitted"),
        row("A", "MODIFY", 2_000, "2", "In Review"),
        row("A", "MODIFY", 3_000, "3", "Rejected"),
        row("B", "INSERT", 1_500, "4"),
        row("B", "REMOVE", 2_500, "5"),
    ], end="5")
    counts = warehouse.merge_pending(snow, settings, mapping, "m1")
    assert destination(snow, settings) == {"A": ("MODIFY", "Rejected")}
    assert (counts.inserted, counts.rows_cleaned) == (1, 5)
    assert count(snow, settings, settings.cdc_table) == 0


def test_modify_without_a_destination_row_is_applied(snow, settings, mapping, clean_pipeline):
    stage(snow, settings, mapping, "b1", [row("A", "MODIFY", 2_000, "1", "Approved")], end="1")
    warehouse.merge_pending(snow, settings, mapping, "m1")
    assert destination(snow, settings) == {"A": ("MODIFY", "Approved")}


def test_an_older_event_in_a_later_batch_does_not_overwrite_newer_data(snow, settings, mapping, clean_pipeline):
    stage(snow, settings, mapping, "b1", [row("A", "MODIFY", 5_000, "5", "Paid")], start=None, end="5")
    warehouse.merge_pending(snow, settings, mapping, "m1")
    stage(snow, settings, mapping, "b2", [row("A", "MODIFY", 4_000, "6", "In Review")], start="5", end="6")
    warehouse.merge_pending(snow, settings, mapping, "m2")
    assert destination(snow, settings) == {"A": ("MODIFY", "Paid")}


def test_late_older_modify_does_not_resurrect_deleted_claim(snow, settings, mapping, clean_pipeline):
    stage(snow, settings, mapping, "b1", [row("A", "INSERT", 1_000, "1"), row("A", "REMOVE", 3_000, "2")], end="2")
    warehouse.merge_pending(snow, settings, mapping, "m1")
    stage(snow, settings, mapping, "b2", [row("A", "MODIFY", 2_000, "3", "Paid")], start="2", end="3")
    warehouse.merge_pending(snow, settings, mapping, "m2")
    assert destination(snow, settings) == {}


def test_newer_reinsert_of_a_deleted_claim_comes_back(snow, settings, mapping, clean_pipeline):
    stage(snow, settings, mapping, "b1", [row("A", "INSERT", 1_000, "1"), row("A", "REMOVE", 2_000, "2")], end="2")
    warehouse.merge_pending(snow, settings, mapping, "m1")
    stage(snow, settings, mapping, "b2", [row("A", "INSERT", 3_000, "3", "Submitted")], start="2", end="3")
    warehouse.merge_pending(snow, settings, mapping, "m2")
    assert destination(snow, settings) == {"A": ("INSERT", "Submitted")}


def test_merge_repeated_after_an_interruption_gives_the_same_result(snow, settings, mapping, clean_pipeline):
    from claims_cdc.sql import load

    stage(snow, settings, mapping, "b1", [row("A", "INSERT", 1_000, "1"), row("B", "INSERT", 1_000, "2")], end="2")
    merge = load("merge", settings, mapping)
    # A worker dies after claiming and merging, before the clean-up ran.
    snow.rowcount(merge["claim_staged"], ["dead"])
    snow.execute(merge["merge_tombstones"], ["dead"])
    snow.execute(merge["merge_destination"], ["dead"])
    # Meanwhile the next batch was staged.
    stage(snow, settings, mapping, "b2", [row("A", "MODIFY", 2_000, "3", "Paid")], start="2", end="3")

    counts = warehouse.merge_pending(snow, settings, mapping, "retry")
    assert destination(snow, settings) == {"A": ("MODIFY", "Paid"), "B": ("INSERT", "Submitted")}
    assert counts.rows_cleaned == 3
    assert count(snow, settings, settings.cdc_table) == 0
    statuses = query(snow, f"SELECT batch_id, status FROM {table(settings, settings.batch_table)} ORDER BY batch_id")
    assert statuses == [("b1", "MERGED"), ("b2", "MERGED")]


def test_cleanup_leaves_rows_staged_after_the_merge_began(snow, settings, mapping, clean_pipeline):
    from claims_cdc.sql import load

    stage(snow, settings, mapping, "b1", [row("A", "INSERT", 1_000, "1")], end="1")
    merge = load("merge", settings, mapping)
    snow.rowcount(merge["claim_staged"], ["m1"])
    stage(snow, settings, mapping, "b2", [row("B", "INSERT", 2_000, "2")], start="1", end="2")
    snow.execute(merge["merge_tombstones"], ["m1"])
    snow.execute(merge["merge_destination"], ["m1"])
    snow.rowcount(load("cleanup", settings, mapping)["cleanup_staging"], ["m1"])

    assert destination(snow, settings) == {"A": ("INSERT", "Submitted")}
    assert query(snow, f"SELECT claimId FROM {table(settings, settings.cdc_table)}") == [("B",)]


def test_reconciliation_is_recorded(snow, settings, mapping, clean_pipeline):
    stage(snow, settings, mapping, "b1", [row("A", "INSERT", 1_000, "1")], end="1")
    warehouse.merge_pending(snow, settings, mapping, "m1")
    result = warehouse.record_reconciliation(snow, settings, mapping, dag_run_id="r1", dynamodb_count=2)
    assert result == {"dynamodb_count": 2, "snowflake_count": 1, "difference": -1, "status": "MISMATCH"}
    recorded = query(snow, f"SELECT dag_run_id, dynamodb_count, snowflake_count, status "
                           f"FROM {table(settings, settings.reconciliation_table)}")
    assert recorded == [("r1", 2, 1, "MISMATCH")]


def test_history_drops_a_copy_resent_under_a_new_event_id(snow, settings, mapping, clean_pipeline):
    original = row("A", "MODIFY", 1_000, "1", "Paid")
    resent = {**original, "cdc_event_id": "another-id", "cdc_sequence_number": "2"}
    stage(snow, settings, mapping, "b1", [original, resent], start=None, end="2")
    stage(snow, settings, mapping, "b2", [{**original, "cdc_event_id": "third-id"}], start="2", end="3")
    assert count(snow, settings, settings.history_table) == 1


def test_distinct_changes_with_equal_content_at_other_times_are_all_kept(snow, settings, mapping, clean_pipeline):
    stage(snow, settings, mapping, "b1", [row("A", "MODIFY", 1_000, "1", "Paid"),
                                          row("A", "MODIFY", 2_000, "2", "Paid")], end="2")
    assert count(snow, settings, settings.history_table) == 2


def test_a_failed_commit_is_rolled_back_so_it_holds_no_locks(snow, settings, mapping, clean_pipeline, monkeypatch):
    from claims_cdc.snowflake import Session

    real_raw = Session.raw

    def commit_fails(self, sql):
        if sql == "COMMIT":
            raise ConnectionError("network dropped at COMMIT")
        return real_raw(self, sql)

    monkeypatch.setattr(Session, "raw", commit_fails)
    with pytest.raises(ConnectionError):
        stage(snow, settings, mapping, "b1", [row("A", "INSERT", 1_000, "1")], start=None, end="1")
    monkeypatch.undo()
    # Nothing was staged or left landed, and the same batch stages cleanly on the retry (no lock left behind).
    assert count(snow, settings, settings.cdc_table) == 0
    assert count(snow, settings, settings.landing_table) == 0
    stage(snow, settings, mapping, "b1", [row("A", "INSERT", 1_000, "1")], start=None, end="1")
    assert count(snow, settings, settings.cdc_table) == 1


def test_accepting_a_retention_gap_restarts_the_shard_and_is_audited(snow, settings, mapping, clean_pipeline):
    stage(snow, settings, mapping, "b1", [row("A", "INSERT", 1_000, "1")], start=None, end="5")
    batch_id = warehouse.accept_gap(snow, settings, mapping, shard_id="shardId-000000000000", operator="oncall")
    checkpoint = warehouse.read_checkpoints(snow, settings, mapping)["shardId-000000000000"]
    assert (checkpoint.sequence_number, checkpoint.closed) == (None, False)
    logged = query(snow, f"SELECT dag_run_id, status FROM {table(settings, settings.batch_table)} WHERE batch_id = ?",
                   [batch_id])
    assert logged == [("oncall", "GAP_ACCEPTED")]


def test_two_different_changes_sharing_an_event_id_are_both_kept(snow, settings, mapping, clean_pipeline):
    first = row("A", "INSERT", 1_000, "1")
    other = row("B", "INSERT", 1_000, "2", cdc_event_id=first["cdc_event_id"])
    other["cdc_content_hash"] = content_hash(other, mapping)
    counts = stage(snow, settings, mapping, "b1", [first, other], end="2")
    assert (counts.rows_staged, counts.history_rows, counts.duplicates_dropped) == (2, 2, 0)
    warehouse.merge_pending(snow, settings, mapping, "m1")
    assert set(destination(snow, settings)) == {"A", "B"}


def test_a_batch_that_does_not_balance_fails_loudly_and_stages_nothing(snow, settings, mapping, clean_pipeline):
    shards = [{"shard_id": "shardId-000000000000", "parent_shard_ids": [], "start": None, "end": "3",
               "records": 3, "drained": False}]
    with pytest.raises(warehouse.BatchImbalance, match="3 records read but 1 rows, 0 re-deliveries dropped and 0 dead letters"):
        warehouse.stage_batch(snow, settings, mapping, batch_id="b1", dag_run_id="t", shards=shards,
                              records_read=3, rows=[row("A", "INSERT", 1_000, "1")], rejected=[])
    assert count(snow, settings, settings.cdc_table) == 0
    assert warehouse.read_checkpoints(snow, settings, mapping) == {}


def test_a_database_error_names_the_statement_and_withholds_the_value(snow, settings, mapping, clean_pipeline):
    """Snowflake's (and the emulator's) conversion errors quote the value they could not cast: the error
    the task logs names the statement and the error number only."""
    from claims_cdc.snowflake import StatementFailed

    bad = row("A", "INSERT", 1_000, "1", createdTimeStamp="MARKER-7f3a")  # bypasses the transform's checks
    with pytest.raises(StatementFailed) as failed:
        stage(snow, settings, mapping, "b1", [bad], end="1")
    assert "copy_landing" in str(failed.value)
    assert "MARKER-7f3a" not in str(failed.value)
    assert failed.value.__cause__ is None and failed.value.__suppress_context__


def test_a_batch_loads_through_the_stage_and_no_statement_binds_it(snow, settings, mapping, clean_pipeline,
                                                                   monkeypatch):
    """Rows and dead letters go up as Parquet (PUT) and in by COPY INTO: the largest value any statement
    binds is small, whatever the batch's size (a bound batch would meet Snowflake's 16 MB value limit)."""
    from claims_cdc.snowflake import Session

    bound, statements = [], []
    real = Session.execute

    def recording(self, statement, params=()):
        statements.append(statement.name)
        bound.extend(len(str(p)) for p in params)
        return real(self, statement, params)

    monkeypatch.setattr(Session, "execute", recording)
    rows = [row(f"C{i}", "INSERT", 1_000 + i, str(i + 1), patientStreet="x" * 500) for i in range(3_000)]
    letters = [{"shard_id": "shardId-000000000000", "sequence_number": str(10_000 + i), "reason": "not JSON",
                "payload": "y" * 500, "payload_base64": "eQ==", "arrival_micros": None} for i in range(200)]
    counts = stage(snow, settings, mapping, "b1", rows, end="20000", rejected=letters)

    assert (counts.rows_staged, counts.history_rows, counts.rows_rejected) == (3_000, 3_000, 200)
    assert count(snow, settings, settings.cdc_table) == 3_000
    assert count(snow, settings, settings.rejected_table) == 200
    assert {"put_rows", "copy_landing", "put_rejected", "copy_rejected"} <= set(statements)
    assert max(bound) < 2_000  # ids and positions only: the batch itself (1.5 MB here) is never bound

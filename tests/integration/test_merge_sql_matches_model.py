"""The staging and merge SQL, on the fakesnow server, do exactly what the merge model says, merge by merge.

Each example draws a history, its deliveries (re-sent copies, random order) and a schedule of staged
batches and merges, with the strategies of tests/merge_histories.py (the model is checked against
last-change-wins with them in tests/unit/test_merge_model.py). Each batch goes into the staging table as
``warehouse.stage_batch`` puts it there (``unique_changes``, the Parquet file, ``put_rows``, ``copy_landing``,
``insert_staging`` and ``delete_landed``; the checkpoint, history and batch-log statements around them take
no part in a merge and are left out, which keeps an example cheap). Each merge
is ``warehouse.merge_pending``, or one that dies after its tombstone or destination statement (the next
merge claims its rows again). After every merge, the destination, the tombstones and the number of staged
rows must equal the model's.
"""

from __future__ import annotations

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from claims_cdc import load_files, warehouse
from claims_cdc.sql import load
from helpers import examples, query, row, table
from merge_histories import deliveries, expected, histories, schedules, view
from merge_model import MergeModel, Order, Row

pytestmark = pytest.mark.stack


def order(text: str) -> Order:
    """A cdc_change_order read back: '<micros>.<sequence number>', both zero-padded."""
    micros, sequence = text.split(".")
    return int(micros), int(sequence)


def staged_row(change: Row) -> dict:
    return row(change.claim, change.event, change.micros, str(change.sequence), change.status,
               cdc_event_id=change.event_id)


def stage(snow, settings, mapping, statements, batch_id: str, batch: list[Row]) -> None:
    """Stage one batch as ``warehouse.stage_batch`` stages its rows."""
    rows = warehouse.unique_changes([staged_row(change) for change in batch])
    with load_files.private_folder() as folder:
        loads = load("load", settings, mapping, batch_id=batch_id, upload_folder=str(folder))
        load_files.write_rows(folder, mapping, batch_id, rows)
        snow.execute(loads["put_rows"])
        snow.execute(loads["copy_landing"])
    assert snow.rowcount(statements["insert_staging"], [batch_id]) == len(rows)
    assert snow.rowcount(statements["delete_landed"], [batch_id]) == len(rows)


def snapshot(snow, settings) -> tuple[dict, dict, int]:
    """(destination, tombstones, number of staged rows) in the model's terms, in one query."""
    rows = query(snow, f"""
        SELECT 'destination', claimId, cdc_change_order, eventName, claimStatus
        FROM {table(settings, settings.dest_table)}
        UNION ALL
        SELECT 'tombstone', claimId, cdc_change_order, NULL, NULL FROM {table(settings, settings.tombstone_table)}
        UNION ALL
        SELECT 'staged', NULL, CAST(COUNT(*) AS STRING), NULL, NULL FROM {table(settings, settings.cdc_table)}""")
    destination = {claim: (order(text), event, status) for kind, claim, text, event, status in rows
                   if kind == "destination"}
    tombstones = {claim: order(text) for kind, claim, text, _, _ in rows if kind == "tombstone"}
    (staged,) = [int(text) for kind, _, text, _, _ in rows if kind == "staged"]
    return destination, tombstones, staged


@hypothesis.settings(max_examples=examples(0.4))
@given(data=st.data())
def test_destination_and_tombstones_match_the_model_after_every_merge(data, snow, settings, mapping,
                                                                      clean_pipeline):
    history = data.draw(histories(min_changes=6, max_changes=14), label="history")
    delivered = data.draw(deliveries(history), label="delivery")
    steps = data.draw(schedules(delivered, most_batches=4, most_merges=2), label="schedule")

    # Empty the tables a merge reads and writes (much faster than clean_pipeline's drop and create).
    for name in (settings.dest_table, settings.tombstone_table, settings.cdc_table):
        snow.raw(f"DELETE FROM {table(settings, name)}")
    stage_sql, merge_sql = load("stage", settings, mapping), load("merge", settings, mapping)
    model = MergeModel()
    batches = 0
    for number, step in enumerate(steps):
        for batch in step.batches:
            batches += 1
            stage(snow, settings, mapping, stage_sql, f"b{batches}", batch)
            model.stage(batch)
        merge_id = f"m{number}"
        if step.merge == "whole":
            warehouse.merge_pending(snow, settings, mapping, merge_id)
            model.merge_staged()
        else:  # the worker dies after this merge's tombstone or destination statement, before clean-up
            snow.rowcount(merge_sql["claim_staged"], [merge_id])
            snow.execute(merge_sql["merge_tombstones"], [merge_id])
            model.merge_tombstones(model.staging)
            if step.merge == "dies after destination":
                snow.execute(merge_sql["merge_destination"], [merge_id])
                model.merge_destination(model.staging)

        destination, tombstones, staged = snapshot(snow, settings)
        assert destination == model.destination, f"destination after merge {number} ({step.merge})"
        assert tombstones == model.tombstones, f"tombstones after merge {number} ({step.merge})"
        assert staged == len(model.staging), f"staged rows after merge {number} ({step.merge})"

    assert staged == 0
    assert view(model) == expected(history)

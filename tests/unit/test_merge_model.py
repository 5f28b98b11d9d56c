"""The merge model (tests/merge_model.py) gives every claim its latest change, however the changes arrive.

Pure Python, no servers. Property tests draw DynamoDB histories of a few claims, deliver them with re-sent
copies in a random order, split the deliveries into staged batches and the batches into merges (some of
them interrupted and retried), and check the model after every merge against ``last_change_wins``; plain
examples name the single behaviours. ``tests/integration/test_merge_sql_matches_model.py`` then checks the
SQL against this model.
"""

from __future__ import annotations

from dataclasses import replace

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import examples
from merge_histories import Step, deliveries, expected, histories, schedules, view
from merge_model import MergeModel, Row

#: CPU-bound and server-less: make test runs it in its second process, beside the deployment.
pytestmark = pytest.mark.second_process


def run(model: MergeModel, step: Step) -> list[Row]:
    """Stage and merge one step; return the rows whose destination step ran."""
    for batch in step.batches:
        model.stage(batch)
    claimed = list(model.staging)
    if step.merge == "whole":
        model.merge_staged()
        return claimed
    model.merge_tombstones(claimed)
    if step.merge == "dies after tombstones":
        return []
    model.merge_destination(claimed)
    return claimed


@hypothesis.settings(max_examples=examples(20))
@given(data=st.data())
def test_after_every_merge_each_claim_holds_its_latest_merged_change(data):
    history = data.draw(histories(), label="history")
    delivered = data.draw(deliveries(history), label="delivery")
    steps = data.draw(schedules(delivered), label="schedule")

    model = MergeModel()
    applied: list[Row] = []
    for step in steps:
        claimed = run(model, step)
        applied += claimed
        assert view(model) == expected(applied)
        # Merging the same rows again (a retry that finds them still staged) changes nothing.
        state = (dict(model.destination), dict(model.tombstones))
        model.merge(claimed)
        assert (model.destination, model.tombstones) == state
        if step.merge != "dies after tombstones":
            # No destination row is older than its claim's latest REMOVE.
            assert all(order > model.tombstones[claim] for claim, (order, _, _) in model.destination.items()
                       if claim in model.tombstones)

    assert model.staging == []
    assert view(model) == expected(history)
    # A tombstone per claim ever deleted, at the time of its latest REMOVE (of which copy: left out).
    removes = [change for change in history if change.event == "REMOVE"]
    assert {claim: order[0] for claim, order in model.tombstones.items()} == {
        claim: max(change.micros for change in removes if change.claim == claim) for claim in {c.claim for c in removes}}


# Single behaviours. r(claim, event, micros, sequence, status) is one delivered row.


def r(claim: str, event: str, micros: int, sequence: int, status: str = "Submitted", event_id: str = "") -> Row:
    return Row(claim, event, micros, sequence, status, event_id or f"{claim}-{micros}-{sequence}")


def merged(*merges: list[Row]) -> MergeModel:
    model = MergeModel()
    for rows in merges:
        model.stage(rows)
        model.merge_staged()
    return model


def test_several_changes_in_one_merge_leave_the_latest():
    model = merged([r("A", "INSERT", 1_000, 1), r("A", "MODIFY", 3_000, 3, "Rejected"),
                    r("A", "MODIFY", 2_000, 2, "In Review"), r("B", "INSERT", 1_500, 4), r("B", "REMOVE", 2_500, 5)])
    assert model.destination == {"A": ((3_000, 3), "MODIFY", "Rejected")}
    assert model.tombstones == {"B": (2_500, 5)}


def test_late_older_modify_does_not_resurrect_deleted_claim():
    model = merged([r("A", "INSERT", 1_000, 1), r("A", "REMOVE", 3_000, 2)], [r("A", "MODIFY", 2_000, 3, "Paid")])
    assert model.destination == {}
    assert model.tombstones == {"A": (3_000, 2)}


def test_late_older_insert_after_the_delete_reached_no_destination_row_stays_out():
    # The REMOVE is merged first, with no destination row to delete: only its tombstone keeps the INSERT out.
    model = merged([r("A", "REMOVE", 3_000, 2)], [r("A", "INSERT", 1_000, 1)])
    assert model.destination == {}


def test_reinsert_after_delete_wins():
    model = merged([r("A", "INSERT", 1_000, 1), r("A", "REMOVE", 2_000, 2)], [r("A", "INSERT", 3_000, 3, "Again")])
    assert model.destination == {"A": ((3_000, 3), "INSERT", "Again")}


def test_reinsert_after_delete_in_the_same_merge_wins_and_the_remove_is_kept_as_tombstone():
    model = merged([r("A", "INSERT", 1_000, 1), r("A", "REMOVE", 2_000, 2), r("A", "INSERT", 3_000, 3, "Again")])
    assert model.destination == {"A": ((3_000, 3), "INSERT", "Again")}
    assert model.tombstones == {"A": (2_000, 2)}


def test_modify_without_destination_row_is_inserted():
    model = merged([r("A", "MODIFY", 2_000, 1, "Approved")])
    assert model.destination == {"A": ((2_000, 1), "MODIFY", "Approved")}


def test_remove_without_destination_row_leaves_only_a_tombstone():
    model = merged([r("A", "REMOVE", 2_000, 1)])
    assert (model.destination, model.tombstones) == ({}, {"A": (2_000, 1)})


def test_older_change_in_a_later_merge_does_not_overwrite_newer_row():
    model = merged([r("A", "MODIFY", 5_000, 5, "Paid")], [r("A", "MODIFY", 4_000, 6, "In Review")])
    assert model.destination == {"A": ((5_000, 5), "MODIFY", "Paid")}


def test_older_remove_in_a_later_merge_does_not_delete_newer_row_but_is_kept_as_tombstone():
    model = merged([r("A", "MODIFY", 5_000, 5, "Paid")], [r("A", "REMOVE", 4_000, 6)])
    assert model.destination == {"A": ((5_000, 5), "MODIFY", "Paid")}
    assert model.tombstones == {"A": (4_000, 6)}


def test_a_tombstone_never_moves_back():
    model = merged([r("A", "REMOVE", 5_000, 5)], [r("A", "REMOVE", 4_000, 6)])
    assert model.tombstones == {"A": (5_000, 5)}


def test_changes_in_one_microsecond_are_ordered_by_sequence_number():
    model = merged([r("A", "MODIFY", 2_000, 8, "Second"), r("A", "MODIFY", 2_000, 7, "First")])
    assert model.destination == {"A": ((2_000, 8), "MODIFY", "Second")}


def test_a_copy_of_an_older_change_resent_later_loses_to_the_newer_change():
    # Time first: the copy's larger sequence number does not make it newer than a change at a later time.
    model = merged([r("A", "MODIFY", 2_000, 2, "New")], [r("A", "MODIFY", 1_000, 9, "Old")])
    assert model.destination == {"A": ((2_000, 2), "MODIFY", "New")}


def test_a_copy_of_the_latest_change_resent_later_replaces_it_with_the_same_values():
    model = merged([r("A", "MODIFY", 2_000, 2, "New")], [r("A", "MODIFY", 2_000, 9, "New")])
    assert model.destination == {"A": ((2_000, 9), "MODIFY", "New")}


def test_limitation_a_copy_of_the_older_of_two_same_microsecond_changes_wins():
    # Two changes of one claim in one microsecond are ordered by sequence number, so a copy of the older one
    # re-sent after the newer one outranks it. The histories above do not re-send such a change.
    history = [r("A", "MODIFY", 2_000, 1, "First"), r("A", "MODIFY", 2_000, 2, "Second")]
    model = merged(history, [replace(history[0], sequence=3)])
    assert view(model) == {"A": (2_000, "MODIFY", "First")} != expected(history)


def test_staging_keeps_the_first_of_rows_repeating_an_event_id_or_a_content():
    first = r("A", "MODIFY", 1_000, 5, "Paid", "ev-1")
    same_id = r("A", "MODIFY", 1_000, 6, "Paid", "ev-1")
    same_content = r("A", "MODIFY", 1_000, 7, "Paid", "ev-1-resent")
    other = r("A", "MODIFY", 1_000, 8, "Denied", "ev-2")
    model = MergeModel()
    model.stage([first, same_id, same_content, other])
    model.stage([same_content])  # another batch: staged again
    assert model.staging == [first, other, same_content]


def test_an_interrupted_merge_retried_with_more_rows_gives_the_same_result_as_one_merge():
    rows = [r("A", "INSERT", 1_000, 1), r("A", "REMOVE", 3_000, 2), r("B", "INSERT", 1_000, 3)]
    later = [r("A", "MODIFY", 2_000, 4, "Late"), r("B", "MODIFY", 2_000, 5, "Paid")]
    interrupted = MergeModel()
    interrupted.stage(rows)
    interrupted.merge(interrupted.staging)  # dies before clean-up
    interrupted.stage(later)
    interrupted.merge_staged()
    once = merged(rows + later)
    assert (interrupted.destination, interrupted.tombstones) == (once.destination, once.tombstones)
    assert interrupted.destination == {"B": ((2_000, 5), "MODIFY", "Paid")}

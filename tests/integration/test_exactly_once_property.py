"""Exactly-once results under everything Kinesis and Airflow really do, checked over random histories.

Each example draws a DynamoDB history (inserts, modifies, deletes, re-inserts of the same claim), delivers
it through moto's Kinesis with random duplicates (same eventID, or re-sent under a new one) and random
reordering, then drains it with the pipeline's own task functions, in runs of random size, with worker
deaths injected before or after random Snowflake statements and random whole-task repeats. After
draining: the destination equals DynamoDB's final state, the history holds each distinct change exactly
once, and the staging table is empty.

The merge rules themselves are checked against a pure-Python reference model over many more histories
(tests/unit/test_merge_model.py, tests/integration/test_merge_sql_matches_model.py); this slow test needs
fewer examples: 20 under the "ci" Hypothesis profile (`make test`), 2 under "dev".
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from claims_cdc import aws, kinesis_reader, pipeline, snowflake
from helpers import RECENT_MICROS, examples, kinesis_doc, query, table

pytestmark = pytest.mark.stack

CLAIMS = ("CLM-A", "CLM-B", "CLM-C")
#: Claims on shard 0 (lower hash range) and shard 1 (upper).
HASH_KEY = {"CLM-A": "1", "CLM-B": str(2**127 + 1), "CLM-C": "2"}
BASE_MICROS = RECENT_MICROS


class WorkerDied(Exception):
    """A simulated worker death at a Snowflake statement."""


@dataclass(frozen=True)
class Change:
    claim: str
    event: str
    micros: int
    new: dict[str, Any] | None
    old: dict[str, Any] | None
    event_id: str


@st.composite
def histories(draw) -> tuple[list[Change], dict[str, str]]:
    ops = draw(st.lists(st.tuples(st.sampled_from(CLAIMS), st.sampled_from(["put", "put", "delete"])),
                        min_size=1, max_size=10))
    state: dict[str, dict[str, Any]] = {}
    changes: list[Change] = []
    micros = BASE_MICROS
    for index, (claim, op) in enumerate(ops):
        micros += draw(st.integers(min_value=1, max_value=5_000))
        if op == "put":
            item = {"claim_id": claim, "claimStatus": f"status-{index}", "totalCharge": Decimal(index)}
            changes.append(Change(claim, "MODIFY" if claim in state else "INSERT", micros, item,
                                  state.get(claim), f"ev-{index}"))
            state[claim] = item
        elif claim in state:
            changes.append(Change(claim, "REMOVE", micros, None, state.pop(claim), f"ev-{index}"))
    return changes, {claim: item["claimStatus"] for claim, item in state.items()}


@st.composite
def deliveries(draw, changes: list[Change]) -> list[tuple[Change, str]]:
    """The order Kinesis delivers in: every change at least once, some twice, some out of order."""
    delivered = [(change, change.event_id) for change in changes]
    for change in changes:
        kind = draw(st.sampled_from(["once", "once", "same-id", "new-id"]))
        if kind != "once":
            event_id = change.event_id if kind == "same-id" else f"{change.event_id}-resent"
            delivered.insert(draw(st.integers(0, len(delivered))), (change, event_id))
    for _ in range(draw(st.integers(0, len(delivered)))):
        i = draw(st.integers(0, len(delivered) - 1))
        j = draw(st.integers(0, len(delivered) - 1))
        delivered[i], delivered[j] = delivered[j], delivered[i]
    return delivered


class Deaths:
    """Counts Snowflake statements and kills the worker at the planned ones (before or after running)."""

    def __init__(self, plan: set[tuple[int, str]]):
        self.plan = plan
        self.count = 0

    def around(self, run):
        def wrapped(session, statement, *args, **kwargs):
            text = getattr(statement, "text", statement)
            if isinstance(text, str) and text.strip().upper() == "ROLLBACK":
                return run(session, statement, *args, **kwargs)  # a dead worker sends nothing; a live one rolls back
            self.count += 1
            if (self.count, "before") in self.plan:
                raise WorkerDied(f"before statement {self.count}")
            result = run(session, statement, *args, **kwargs)
            if (self.count, "after") in self.plan:
                raise WorkerDied(f"after statement {self.count}")
            return result

        return wrapped


@pytest.fixture
def reset(settings, mapping, stack):
    """Per example: empty pipeline tables, a fresh stream, no batch files."""
    names = [settings.dest_table, settings.cdc_table, settings.history_table, settings.checkpoint_table,
             settings.batch_table, settings.rejected_table, settings.tombstone_table, settings.reconciliation_table]

    def _reset():
        kinesis = aws.kinesis_client(settings.aws_conn_id)
        if settings.kinesis_stream in kinesis.list_streams()["StreamNames"]:
            kinesis.delete_stream(StreamName=settings.kinesis_stream)
        kinesis.create_stream(StreamName=settings.kinesis_stream, ShardCount=2)
        with snowflake.session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow:
            for name in names:
                snow.raw(f"DELETE FROM {table(settings, name)}")
        shutil.rmtree(stack.state_dir / "batches", ignore_errors=True)
        return kinesis

    return _reset


@hypothesis_settings(max_examples=examples(0.1))
@given(data=st.data())
def test_drained_pipeline_equals_dynamodb_with_each_change_once(data, settings, clean_pipeline, reset,
                                                                monkeypatch):
    monkeypatch.setattr(kinesis_reader, "MIN_SECONDS_BETWEEN_READS", 0.0)  # moto has no read limit
    changes, final_state = data.draw(histories(), label="history")
    delivered = data.draw(deliveries(changes), label="delivery")
    deaths = Deaths(set(data.draw(
        st.lists(st.tuples(st.integers(1, 60), st.sampled_from(["before", "after"])), max_size=4),
        label="deaths")))

    kinesis = reset()
    for change, event_id in delivered:
        doc = kinesis_doc(change.event, change.new or change.old, change.micros, event_id, old=change.old)
        kinesis.put_record(StreamName=settings.kinesis_stream, Data=doc, PartitionKey=change.claim,
                           ExplicitHashKey=HASH_KEY[change.claim])

    def task(fn, *args):
        """Run a task as Airflow would: up to 3 tries; a death is retried or fails the run; a finished try
        may run again (the worker died after finishing, before Airflow recorded it)."""
        for attempt in range(1, 4):
            try:
                result = fn(*args)
            except WorkerDied:
                if attempt == 3 or data.draw(st.booleans(), label="abandon run after death"):
                    raise
                continue
            if attempt < 3 and data.draw(st.integers(0, 9), label="repeat finished task") == 0:
                continue
            return result
        raise AssertionError("unreachable")

    # Deaths apply only while draining: a failing example must not leak its patches into the next one.
    with monkeypatch.context() as patched:
        patched.setattr(snowflake.Session, "execute", deaths.around(snowflake.Session.execute))
        patched.setattr(snowflake.Session, "raw", deaths.around(snowflake.Session.raw))
        for run in range(60):
            run_id = f"run-{run}"
            cap = data.draw(st.integers(1, 6), label="max_records")
            try:
                # The DAG's shape: the plan, one task per shard (each retried on its own), one stage.
                shards = task(pipeline.plan, settings, run_id, cap, None)
                done = [task(pipeline.read_shard, settings, shard) for shard in shards]
                batch = task(pipeline.stage, settings, done, run_id)
                task(pipeline.merge, settings, batch, run_id)
            except WorkerDied:
                continue  # the run failed; the next one starts from the stored checkpoints
            if batch["records"] == 0 and not any(s["drained"] for s in batch["shards"]):
                break
        else:
            pytest.fail("the stream did not drain in 60 runs")

    with snowflake.session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow:
        dest = dict(query(snow, f"SELECT claimId, claimStatus FROM {table(settings, settings.dest_table)}"))
        history = query(snow, f"SELECT claimId, eventName, eventCreationUnixTime "
                              f"FROM {table(settings, settings.history_table)}")
        staged = query(snow, f"SELECT COUNT(*) FROM {table(settings, settings.cdc_table)}")[0][0]
    assert dest == final_state
    assert sorted(history) == sorted((c.claim, c.event, str(c.micros)) for c in changes)
    assert staged == 0

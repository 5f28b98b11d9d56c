"""A hostile producer: every kind of poison of tests/poison.py, each between a good record before it and a
good record after it on the same shard, drained through the claims_cdc DAG (dag.test()).

What a user checks: every good claim is in the destination; every bad record is in the dead-letter table
with its reason; no run failed; every batch balances (read = staged + re-deliveries dropped + dead
letters); and after the mapping "is fixed", a re-drive lands the records that now pass, marking them."""

from __future__ import annotations

import json

import pytest

from claims_cdc import aws, pipeline, warehouse
from helpers import RECENT_MICROS, destination, query, run_dag, table, task_states
from poison import ACCEPTED, BAD, change, encode

pytestmark = pytest.mark.stack

#: Every record on shard 0 (the lower half of the hash key range): one shard, in this order.
SHARD_0_KEY = "1"


def test_poison_is_dead_lettered_between_good_records_and_no_run_fails(settings, snow, clean_pipeline):
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    micros = RECENT_MICROS
    expected_good, expected_bad = {}, {}
    sequence_of = {}

    def put(claim_id: str, data: bytes) -> str:
        sequence = kinesis.put_record(StreamName=settings.kinesis_stream, PartitionKey=claim_id,
                                      ExplicitHashKey=SHARD_0_KEY, Data=data)["SequenceNumber"]
        sequence_of[claim_id] = sequence
        return sequence

    for index, kind in enumerate(BAD):
        micros += 10
        before, bad, after = f"GOOD-{index}-before", f"BAD-{index}", f"GOOD-{index}-after"
        put(before, encode(change(before, micros)))
        expected_bad[put(bad, kind.build(bad, micros + 1))] = kind
        put(after, encode(change(after, micros + 2)))
        expected_good.update({before: ("INSERT", "Submitted"), after: ("INSERT", "Submitted")})
    for index, kind in enumerate(ACCEPTED):
        micros += 10
        put(f"ODD-{index}", kind.build(f"ODD-{index}", micros))
    # Two different claims whose records carry the same eventID: both land, neither vanishes.
    put("SAME-ID-1", encode(change("SAME-ID-1", micros + 20, event_id="shared-event-id")))
    put("SAME-ID-2", encode(change("SAME-ID-2", micros + 21, event_id="shared-event-id")))
    # A re-delivery (the same record again) is dropped, and counted as such.
    put("SAME-ID-1", encode(change("SAME-ID-1", micros + 20, event_id="shared-event-id")))

    dag_run = run_dag()
    assert dag_run.state == "success"
    assert set(task_states(dag_run).values()) == {"success"}

    landed = destination(snow, settings)
    for claim_id, state in expected_good.items():
        assert landed.get(claim_id) == state, claim_id
    assert {f"ODD-{i}" for i in range(len(ACCEPTED))} | {"SAME-ID-1", "SAME-ID-2"} <= set(landed)
    assert not any(claim_id.startswith("BAD-") for claim_id in landed)

    letters = {seq: reason for seq, reason in query(
        snow, f"SELECT sequence_number, reason FROM {table(settings, settings.rejected_table)}")}
    assert set(letters) == set(expected_bad)
    for sequence, kind in expected_bad.items():
        assert kind.reason in letters[sequence], kind.name

    for column_values, kind in ((_dest_row(snow, settings, f"ODD-{i}"), k) for i, k in enumerate(ACCEPTED)):
        for column, value in kind.expect.items():
            got = column_values[column]
            assert (str(got) if column == "createdtimestamp" else got) == value, (kind.name, column)

    [(read, staged, dropped, rejected)] = query(snow, f"""
        SELECT records_read, rows_staged, duplicates_dropped, rows_rejected
        FROM {table(settings, settings.batch_table)}""")
    assert read == 3 * len(BAD) + len(ACCEPTED) + 3
    assert (rejected, dropped) == (len(BAD), 1)
    assert read == staged + dropped + rejected

    # The unknown attribute is kept in the history and named (never valued) in the operator's report.
    report = warehouse.report(snow, settings, pipeline.mapping_for(settings))
    assert report["unmapped_attributes"].get("loyaltyTier") == 1
    assert sum(r["records"] for r in report["dead_letters"]) == len(BAD)
    [(image,)] = query(snow, f"""SELECT cdc_new_image:loyaltyTier:S::STRING FROM {table(settings, settings.history_table)}
                                 WHERE cdc_unmapped_attributes IS NOT NULL""")
    assert image == "Platinum"

    # The shard moved past every record: the next run finds nothing and skips (all but the clean-up).
    states = task_states(run_dag(sensor_timeout=2))
    assert states.pop("alerts_checked") == "success"  # the alert checks run in idle runs too
    assert states.pop("removed_batch_files") == "success"
    assert states.pop("run_note") == "success"
    assert set(states.values()) == {"skipped"}


def _dest_row(snow, settings, claim_id: str) -> dict:
    cursor = snow.connection.cursor()
    cursor.execute(f"SELECT * FROM {table(settings, settings.dest_table)} WHERE claimId = ?", [claim_id])
    names = [d[0].lower() for d in cursor.description]
    return dict(zip(names, cursor.fetchone(), strict=True))


def test_dead_letters_are_redriven_after_a_fix_and_marked_never_deleted(settings, snow, mapping, clean_pipeline,
                                                                        tmp_path):
    """A zip written as text is dead-lettered; the mapping is "fixed" (the column becomes a STRING), the
    re-drive lands it, and the dead letter stays, marked with the re-drive's batch."""
    import dataclasses

    kinesis = aws.kinesis_client(settings.aws_conn_id)
    bad = change("CLM-ZIP", RECENT_MICROS)
    bad["dynamodb"]["NewImage"]["patient"]["M"]["address"]["M"]["zip"] = {"S": "62701-1234"}
    kinesis.put_record(StreamName=settings.kinesis_stream, PartitionKey="CLM-ZIP", Data=json.dumps(bad).encode())
    assert run_dag().state == "success"
    assert "CLM-ZIP" not in destination(snow, settings)

    # Nothing changed yet: a re-drive dead-letters it again, with its reason, and marks the first letter.
    again = pipeline.redrive(settings, limit=100, run_id="manual-redrive-1")
    assert (again["redriven"], again["rows_staged"], again["still_rejected"]) == (1, 0, 1)

    mapping_doc = json.loads(settings.mapping_path.read_text())
    for column in mapping_doc["columns"]:
        if column["column"] == "patientZip":
            column["type"] = "STRING"
    fixed_path = tmp_path / "claims.json"
    fixed_path.write_text(json.dumps(mapping_doc))
    fixed = dataclasses.replace(settings, mapping_path=fixed_path)
    try:
        for name in (settings.dest_table, settings.cdc_table, settings.landing_table, settings.history_table):
            snow.connection.cursor().execute(
                f"ALTER TABLE {table(settings, name)} ALTER COLUMN patientZip SET DATA TYPE STRING")
        _redrive_after_the_fix(settings, fixed, snow)
    finally:  # the next test's clean_pipeline only empties tables: give them their columns back
        warehouse.run_teardown(snow, settings, mapping)
        warehouse.run_setup(snow, settings, mapping)


def _redrive_after_the_fix(settings, fixed, snow) -> None:
    done = pipeline.redrive(fixed, limit=100, run_id="manual-redrive-2")
    assert (done["redriven"], done["rows_staged"], done["still_rejected"]) == (1, 1, 0)
    assert destination(snow, settings)["CLM-ZIP"] == ("INSERT", "Submitted")
    letters = query(snow, f"""SELECT redrive_batch_id IS NOT NULL FROM {table(settings, settings.rejected_table)}
                              ORDER BY rejected_at""")
    assert letters == [(True,), (True,)]  # both kept, both marked
    assert pipeline.redrive(fixed, limit=100, run_id="manual-redrive-3")["redriven"] == 0

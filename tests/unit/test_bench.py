"""`make bench`'s pure parts: the generator's history and expected final state, its records, the figures."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter, defaultdict
from itertools import pairwise

import pytest
from boto3.dynamodb.types import TypeSerializer

from claims_cdc_dev import bench, bench_stream


def test_expected_final_state_follows_inserts_modifies_removes_and_reinserts_in_order():
    history = [
        ("CLM-A", "INSERT", "Submitted"), ("CLM-B", "INSERT", "Submitted"), ("CLM-A", "MODIFY", "Approved"),
        ("CLM-B", "REMOVE", None), ("CLM-C", "INSERT", "In Review"), ("CLM-C", "REMOVE", None),
        ("CLM-C", "INSERT", "Paid"), ("CLM-A", "MODIFY", "Rejected"), ("CLM-D", "INSERT", "Submitted"),
        ("CLM-D", "REMOVE", None),
    ]
    assert bench_stream.expected_final_state(history) == {"CLM-A": "Rejected", "CLM-C": "Paid"}


def test_expected_final_state_refuses_an_unknown_event_or_a_change_without_a_status():
    with pytest.raises(ValueError, match="unknown event"):
        bench_stream.expected_final_state([("CLM-A", "UPSERT", "Paid")])
    with pytest.raises(ValueError, match="without a status"):
        bench_stream.expected_final_state([("CLM-A", "MODIFY", None)])


def test_plan_history_spends_the_budget_exactly_with_each_claims_events_in_a_valid_order():
    history = bench_stream.plan_history(5_000, seed=7)
    assert len(history) == 5_000
    assert history == bench_stream.plan_history(5_000, seed=7)  # a fixed seed, a fixed stream
    per_claim: dict[int, list[str]] = defaultdict(list)
    for change in history:
        per_claim[change.claim].append(change.event)
    for events in per_claim.values():
        assert events[0] == "INSERT"
        for previous, event in pairwise(events):
            # after a REMOVE only an INSERT; an INSERT only first or after a REMOVE
            assert (event == "INSERT") == (previous == "REMOVE")
    counts = Counter(change.event for change in history)
    assert set(counts) == {"INSERT", "MODIFY", "REMOVE"}
    assert 3.5 < len(history) / len(per_claim) < 6.5  # about five changes per claim
    reinserted = sum(1 for events in per_claim.values() if events.count("INSERT") > 1)
    assert reinserted > 0


def _decoded_stream(changes: int, seed: int) -> tuple[list[dict], bench_stream.Stream]:
    stream = bench_stream.Stream(changes=changes, claims=0, events={}, final_status={}, final_items={}, data_bytes=0)
    entries = list(bench_stream.records(bench_stream.plan_history(changes, seed), seed, 1_800_000_000_000, stream))
    return entries, stream


def test_records_are_dynamodb_streaming_destination_records_whose_replay_gives_the_final_state():
    entries, stream = _decoded_stream(600, seed=3)
    serializer = TypeSerializer()
    replayed: dict[str, str] = {}
    times: list[int] = []
    for entry in entries:
        doc = json.loads(entry["Data"])
        change = doc["dynamodb"]
        key = change["Keys"]["claim_id"]["S"]
        assert entry["PartitionKey"] == key  # a claim's changes stay on one shard, in order
        assert doc["eventSource"] == "aws:dynamodb" and doc["recordFormat"] == "application/json"
        assert len(doc["eventID"]) == 32
        times.append(change["ApproximateCreationDateTime"])
        if doc["eventName"] == "REMOVE":
            assert "NewImage" not in change and change["OldImage"]["claim_id"]["S"] == key
            replayed.pop(key)
        else:
            assert change["NewImage"]["claim_id"]["S"] == key
            assert ("OldImage" in change) == (doc["eventName"] == "MODIFY")
            replayed[key] = change["NewImage"]["claimStatus"]["S"]
    assert times == sorted(set(times)) and times[-1] == 1_800_000_000_000  # milliseconds, strictly increasing
    assert replayed == stream.final_status
    assert set(stream.final_items) == set(stream.final_status)
    assert sum(stream.events.values()) == 600
    # The final items are what the last record of each claim says, in boto3's own DynamoDB JSON.
    last_image = {}
    for entry in entries:
        doc = json.loads(entry["Data"])
        if doc["eventName"] != "REMOVE":
            last_image[doc["dynamodb"]["Keys"]["claim_id"]["S"]] = doc["dynamodb"]["NewImage"]
    for claim_id, item in stream.final_items.items():
        assert {k: serializer.serialize(v) for k, v in item.items()} == last_image[claim_id]


def test_the_stream_is_the_same_for_the_same_seed():
    first, _ = _decoded_stream(200, seed=11)
    second, _ = _decoded_stream(200, seed=11)
    assert [e["Data"] for e in first] == [e["Data"] for e in second]


def test_ratios_verdicts_and_the_markdown_table():
    results = {
        "floor": {"read_seconds": 10.0, "json_decode_seconds": 2.0, "records": 100_000},
        "stage_floors": {"extract_seconds": 12.0, "transform_seconds": 5.0},
        "in_process": {"stages": {"shard_batch": 12.0, "stage": 5.0}, "seconds": 19.0, "runs": 10, "batches": 10,
                       "statements_per_batch": 24.25, "peak_rss_mib": 321.4},
        "airflow": {"seconds": 31.0, "runs": 11, "batches": 10, "peak_rss_mib": 446.0},
    }
    assert bench.ratio(19.0, 10.0) == pytest.approx(1.9)
    assert bench.ratio(1.0, 0.0) is None and bench.ratio(None, 1.0) is None
    assert bench.verdict(2.0, 2.0) == "within target" and bench.verdict(2.01, 2.0) == "over target"
    assert bench.verdict(None, 2.0) == "not measured"

    table = bench.report(results).splitlines()
    assert table[0] == "| figure | seconds | × read floor | note |"
    assert table[1] == "|---|---:|---:|---|"
    assert "| in-process: stage | 5.00 | 0.50× |  |" in table
    assert any(line.startswith("| transform alone:") and "| 5.00 | 0.50× | 2.50× the JSON decode; target ≤ 2×: "
               "over target |" in line for line in table)
    assert "| **in-process drain, total** (runs: 10) | 19.0 | 1.90× | target ≤ 2×: within target |" in table
    assert "| **`airflow dags test` drain, total** (runs: 11) | 31.0 | 3.10× | target ≤ 3×: over target |" in table
    assert "| Snowflake statements per batch | 24.2 | – |" in table
    assert "| peak RSS (MiB) | 321 | 446 |" in table
    assert "in-process drain / plain read: 1.90× (target ≤ 2×): within target" in table
    assert "`airflow dags test` drain / plain read: 3.10× (target ≤ 3×): over target" in table
    assert "extract / plain read (stage target): 1.20× (target ≤ 1.3×): within target" in table
    assert "transform / JSON decode (stage target): 2.50× (target ≤ 2×): over target" in table


def test_the_transform_is_compared_with_the_decode_timed_beside_it():
    """The transform's stage target compares it with the JSON decode of the same records timed beside it,
    not with the decode timed during the plain read (another moment of the machine)."""
    results = {"floor": {"read_seconds": 10.0, "json_decode_seconds": 2.0, "records": 100_000},
               "stage_floors": {"extract_seconds": 12.0, "transform_seconds": 5.0, "json_decode_seconds": 3.0,
                                "transform_repetitions": 3}}
    table = bench.report(results).splitlines()
    assert "transform / JSON decode (stage target): 1.67× (target ≤ 2×): within target" in table
    assert any(line.startswith("| JSON decode (floor): stdlib json.loads of every record, beside the transform")
               and "| 3.00 | 0.30× |" in line for line in table)
    assert any(line.startswith("| transform alone:") and "best of 3 | 5.00 | 0.50× | 1.67× the JSON decode"
               in line for line in table)


def test_a_drain_not_run_is_reported_as_not_measured():
    lines = bench.target_lines({"floor": {"read_seconds": 10.0, "json_decode_seconds": 2.0}})
    assert lines[1] == "`airflow dags test` drain / plain read: – (target ≤ 3×): not measured"


def test_destination_checks_name_counts_and_claim_ids_only():
    expected = {"CLM-A": "Paid", "CLM-B": "Submitted"}
    actual = {"CLM-A": "Rejected", "CLM-C": "Paid"}
    checks = {c["check"]: c for c in bench.destination_checks("airflow", expected, actual, history_rows=9,
                                                              changes=10, staging_rows=1, landed_rows=2,
                                                              dead_letters=0)}
    assert checks["destination rows"]["ok"]  # the count alone agrees ...
    assert not checks["every claim's status"]["ok"]  # ... the claims do not
    assert checks["every claim's status"]["detail"] == "3 claims differ (first: CLM-A, CLM-B, CLM-C)"
    assert "Paid" not in json.dumps(list(checks.values()))  # no value, only ids and counts
    assert not checks["history rows = distinct changes"]["ok"] and not checks["staging empty"]["ok"]
    assert checks["landing table empty"]["detail"] == "2 rows" and not checks["landing table empty"]["ok"]
    assert checks["no dead letters"]["ok"]


def test_settings_default_to_the_issues_stream_and_keep_other_sizes_off_the_committed_chart(tmp_path):
    default = bench.BenchConfig.from_env({"CDC_STATE_DIR": str(tmp_path)})
    assert (default.changes, default.shards, default.drains) == (100_000, 4, ("in-process", "airflow"))
    assert default.chart == bench.DEFAULT_CHART
    large = bench.BenchConfig.from_env({"CDC_STATE_DIR": str(tmp_path), "BENCH_CHANGES": "400000",
                                        "BENCH_DRAINS": "none"})
    assert large.drains == () and large.chart == tmp_path / "bench" / "bench-400000.png"
    with pytest.raises(SystemExit, match="unknown drain"):
        bench.BenchConfig.from_env({"BENCH_DRAINS": "in-process,dlt"})


def test_a_measured_child_reports_its_own_peak_rss_exit_code_and_output(tmp_path):
    from claims_cdc_dev.bench import run_measured

    grow = "import sys; held = bytearray(120 * 2**20); print('grew'); sys.exit(3)"
    code, seconds, rss_mib = run_measured([sys.executable, "-c", grow], dict(os.environ), tmp_path / "c.log", 60)
    assert (code, (tmp_path / "c.log").read_text()) == (3, "grew\n")
    assert 120 < rss_mib < 250 and seconds > 0


def test_statements_are_counted_and_timed_by_name_and_a_skipped_one_is_not():
    """The in-process drain's statement figures: each sent statement under its name with its seconds, the
    transaction controls under their first word; one the emulator skips (``execute`` answers None) not at all."""
    import time
    from types import SimpleNamespace

    class FakeSession:
        def execute(self, statement, params=()):
            time.sleep(0.02 if statement.name == "copy_landing" else 0)
            return None if statement.name == "snowflake_only" else object()

        def raw(self, sql):
            time.sleep(0.03)

    counts, seconds = Counter(), Counter()
    bench.count_statements(FakeSession, counts, seconds)
    session = FakeSession()
    for name in ("copy_landing", "insert_staging", "copy_landing", "snowflake_only"):
        session.execute(SimpleNamespace(name=name))
    session.raw("BEGIN TRANSACTION")
    session.raw("COMMIT")

    assert counts == {"copy_landing": 2, "insert_staging": 1, "BEGIN": 1, "COMMIT": 1}
    assert set(seconds) == set(counts)
    assert seconds["copy_landing"] >= 0.04 and seconds["COMMIT"] >= 0.03
    assert seconds["insert_staging"] < seconds["copy_landing"]

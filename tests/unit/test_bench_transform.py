"""The transform benchmark's records are what the stream writes, all of them land, and it reports figures
(it is timed in the benchmark itself, never here)."""

from __future__ import annotations

import json

import pytest

from claims_cdc.mapping import load_mapping
from claims_cdc.settings import INCLUDE_DIR
from claims_cdc.transform import TimeRules, transform_records
from claims_cdc_dev.bench_transform import build_records, measure

MAPPING = load_mapping(INCLUDE_DIR / "mapping" / "claims.json")


def test_benchmark_records_are_stream_records_of_every_event_and_all_land():
    records = build_records(60)
    assert records == build_records(60)  # the same records for a seed: runs compare
    docs = [json.loads(record.data) for record in records]
    assert {doc["eventName"] for doc in docs} == {"INSERT", "MODIFY", "REMOVE"}
    for doc, record in zip(docs, records, strict=True):
        change = doc["dynamodb"]
        assert set(doc) >= {"awsRegion", "eventID", "eventName", "userIdentity", "recordFormat", "tableName",
                            "dynamodb", "eventSource"}
        assert ("NewImage" in change) == (doc["eventName"] != "REMOVE")
        assert ("OldImage" in change) == (doc["eventName"] != "INSERT")
        assert 0 < record.arrival_micros - change["ApproximateCreationDateTime"] <= 2_000_000
        assert b" " not in record.data.split(b'"dynamodb"')[0]  # compact JSON, as the stream writes it
    result = transform_records(records, MAPPING, TimeRules())
    assert (len(result.rows), result.rejected) == (60, [])


def test_measure_reports_both_figures_and_their_ratio():
    figures = measure(build_records(20), MAPPING, repetitions=1, chunk=7)
    assert figures["records"] == 20
    assert figures["floor_us"] > 0 and figures["transform_us"] > 0
    # the same ratio, up to float rounding (the figures are per record, the ratio of the totals)
    assert figures["ratio"] == pytest.approx(figures["transform_us"] / figures["floor_us"], rel=1e-12)

"""PHI stays in the warehouse: claims carrying a distinctive marker in every field, in bad type tags and in
values that fail to parse, run through the claims_cdc DAG; then every log of the run (task logs on stdout
and stderr, Python logging, Airflow's log folder) and the metadata database (XCom, rendered fields, task
instances) is searched for the marker, and must not hold it. The warehouse must (positive control)."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import pytest

from claims_cdc import aws
from helpers import RECENT_MICROS, destination, query, run_dag, table
from poison import change, claim_item, encode

pytestmark = pytest.mark.stack


def _marked_item(claim_id: str, marker: str) -> dict:
    """Every string attribute of the claim carries the marker (numbers and dates stay valid)."""
    def mark(value):
        if isinstance(value, dict) and list(value) == ["S"]:
            return value if value["S"][:4].isdigit() else {"S": f"{value['S']}-{marker}"}
        if isinstance(value, dict) and list(value) == ["M"]:
            return {"M": {k: mark(v) for k, v in value["M"].items()}}
        if isinstance(value, dict) and list(value) == ["L"]:
            return {"L": [mark(v) for v in value["L"]]}
        return value
    item = {k: mark(v) for k, v in claim_item(claim_id).items()}
    item["claim_id"] = {"S": claim_id}
    item["patient"]["M"]["gender"] = {"S": "F"}  # VARCHAR(1)
    return item


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))


def test_no_log_xcom_or_metadata_row_quotes_a_record_value(settings, snow, stack, clean_pipeline, capfd):
    marker = f"PHIMARK{uuid.uuid4().hex[:10]}"
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    good = [f"CLM-{marker}-{i}" for i in range(3)]
    micros = RECENT_MICROS

    def put(claim_id: str, data: bytes) -> None:
        kinesis.put_record(StreamName=settings.kinesis_stream, PartitionKey=claim_id, Data=data)

    for index, claim_id in enumerate(good):
        put(claim_id, encode(change(claim_id, micros + index, item=_marked_item(claim_id, marker))))
    bad_docs = []
    for field, value in [("memberId", {f"{marker}TAG": "x"}),            # a bad type tag
                         ("totalCharge", {"N": f"{marker}"}),             # a number that does not parse
                         ("createdTimeStamp", {"S": f"2026-{marker}"}),  # a timestamp that does not parse
                         ("patient", {"M": marker}),                      # a malformed descriptor
                         ("claimStatus", {"S": marker, "N": marker})]:    # two type tags
        claim_id = f"BAD-{marker}-{field}"
        doc = change(claim_id, micros + 10, item=_marked_item(claim_id, marker))
        doc["dynamodb"]["NewImage"][field] = value
        bad_docs.append(doc)
        put(claim_id, encode(doc))
    put(f"RAW-{marker}", f"not json {marker}".encode())
    put(f"KEY-{marker}", encode({**change(f"KEY-{marker}", micros), "eventName": marker}))

    collector = _Collect()
    root = logging.getLogger()
    root.addHandler(collector)
    try:
        dag_run = run_dag()
    finally:
        root.removeHandler(collector)
    out, err = capfd.readouterr()

    assert dag_run.state == "success"
    assert set(destination(snow, settings)) == set(good)
    dead = query(snow, f"SELECT payload FROM {table(settings, settings.rejected_table)}")
    assert len(dead) == len(bad_docs) + 2
    assert all(marker in payload for (payload,) in dead)  # positive control: the warehouse holds it

    hits = [f"stdout: {line}" for line in out.splitlines() if marker in line]
    hits += [f"stderr: {line}" for line in err.splitlines() if marker in line]
    hits += [f"logging: {line}" for line in collector.lines if marker in line]
    airflow_home = Path(os.environ["AIRFLOW_HOME"])
    for path in [*airflow_home.rglob("*"), *(stack.state_dir / "batches").rglob("*")]:
        if path.is_file() and marker.encode() in path.read_bytes():
            hits.append(f"file: {path}")
    assert collector.lines, "the collector saw no log line: the search would prove nothing"
    assert hits == []

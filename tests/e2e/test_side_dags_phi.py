"""PHI stays in the warehouse in the side DAGs too: claims carrying a marker in every field (their ids as
well) loaded by claims_cdc_snapshot (export) and audited and repaired by claims_cdc_audit; then every log
of the runs, Airflow's folder (the metadata database with XCom and rendered fields) and the batch files are
searched for the marker, and must not hold it. The warehouse must (positive control)."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import pytest

from claims_cdc import aws
from helpers import query, run_dag_named, table
from poison import claim_item

pytestmark = pytest.mark.stack


def _marked(claim_id: str, marker: str) -> dict:
    item = {k: ({"S": f"{v['S']}-{marker}"} if list(v) == ["S"] and not v["S"][:4].isdigit() else v)
            for k, v in claim_item(claim_id).items()}
    item["claim_id"] = {"S": claim_id}
    item["patient"] = {"M": {"firstName": {"S": f"Ada-{marker}"}, "gender": {"S": "F"}}}
    return item


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))


def test_snapshot_and_audit_with_repair_log_and_xcom_no_record_value(settings, snow, stack, clean_pipeline, capfd):
    marker = f"PHIMARK{uuid.uuid4().hex[:10]}"
    ddb = aws.dynamodb_json_client(settings.aws_conn_id)
    good = [f"CLM-{marker}-{i}" for i in range(4)]
    for claim_id in good:
        ddb.put_item(TableName=settings.dynamodb_table, Item=_marked(claim_id, marker))
    bad = _marked(f"BAD-{marker}", marker)
    bad["totalCharge"] = {"S": marker}  # not a number: the transform dead-letters it, the audit flags it
    ddb.put_item(TableName=settings.dynamodb_table, Item=bad)

    collector = _Collect()
    root = logging.getLogger()
    root.addHandler(collector)
    try:
        assert run_dag_named("claims_cdc_snapshot", method="export").state == "success"
        dest = table(settings, settings.dest_table)
        query(snow, f"UPDATE {dest} SET memberId = 'altered' WHERE claimId = ?", [good[0]])
        query(snow, f"DELETE FROM {dest} WHERE claimId = ?", [good[1]])
        assert run_dag_named("claims_cdc_audit", segments=2).state == "success"
    finally:
        root.removeHandler(collector)
    out, err = capfd.readouterr()

    rows = query(snow, f"SELECT claimId, memberId, patientFirstName FROM {table(settings, settings.dest_table)}")
    assert sorted(r[0] for r in rows) == sorted(good)  # repaired
    assert all(marker in member and marker in first for _, member, first in rows)  # positive control
    kinds = query(snow, f"SELECT kind, COUNT(*) FROM {table(settings, settings.audit_divergence_table)} "
                        "GROUP BY kind ORDER BY kind")
    assert kinds == [("different", 1), ("missing", 2)]  # the altered, the deleted and the unloadable claim

    hits = [f"stdout: {line}" for line in out.splitlines() if marker in line]
    hits += [f"stderr: {line}" for line in err.splitlines() if marker in line]
    hits += [f"logging: {line}" for line in collector.lines if marker in line]
    for path in [*Path(os.environ["AIRFLOW_HOME"]).rglob("*"), *(stack.state_dir / "batches").rglob("*")]:
        if path.is_file() and marker.encode() in path.read_bytes():
            hits.append(f"file: {path}")
    assert collector.lines, "the collector saw no log line: the search would prove nothing"
    assert hits == []

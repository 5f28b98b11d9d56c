"""Under the `make up` deployment, a claim written with plain boto3 reaches the destination on its own:
no trigger, no `dags test`, only the scheduler's continuous runs and the triggerer's deferred sensor."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

pytestmark = pytest.mark.stack


def _destination_row(deployment, claim_id: str) -> tuple | None:
    with deployment.snowflake() as snow:
        cursor = snow.connection.cursor()
        cursor.execute(
            "SELECT claimId, claimStatus, totalCharge, patientZip, eventName "
            "FROM CDC_DB.CDC_SCHEMA.openflow_insclaim_dest_tbl WHERE claimId = ?",
            [claim_id],
        )
        rows = cursor.fetchall()
    return rows[0] if rows else None


def _wait_for_row(deployment, claim_id: str, seconds: float = 120) -> tuple | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = _destination_row(deployment, claim_id)
        if row is not None:
            return row
        time.sleep(1)
    return None


def test_claim_written_with_plain_boto3_appears_with_no_manual_action(deployment):
    claim_id = f"LIVE-{int(time.time())}"
    runs_before = {r["dag_run_id"] for r in deployment.api("/dags/claims_cdc/dagRuns?limit=100")["dag_runs"]}
    table = deployment.dynamodb_table()
    table.put_item(Item={
        "claim_id": claim_id,
        "claimStatus": "Submitted",
        "totalCharge": Decimal("1234.56"),
        "patient": {"address": {"zip": Decimal(94107), "state": "CA"}},
        "createdTimeStamp": "2026-11-24T10:00:00.000000",
    })

    row = _wait_for_row(deployment, claim_id)

    assert row is not None, "the claim never reached openflow_insclaim_dest_tbl"
    assert row[0] == claim_id and row[1] == "Submitted" and float(row[2]) == 1234.56 and int(row[3]) == 94107

    # A change to it follows on its own, too.
    table.update_item(Key={"claim_id": claim_id}, UpdateExpression="SET claimStatus = :s",
                      ExpressionAttributeValues={":s": "Approved"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (_destination_row(deployment, claim_id) or ("", ""))[1] != "Approved":
        time.sleep(1)
    assert _destination_row(deployment, claim_id)[1] == "Approved"

    runs = [r for r in deployment.api("/dags/claims_cdc/dagRuns?limit=100")["dag_runs"]
            if r["dag_run_id"] not in runs_before]
    assert runs, "no DAG run since the write"
    assert {r["run_type"] for r in runs} == {"scheduled"}, "something triggered a run by hand"
    assert all(r["state"] in {"success", "running", "queued"} for r in runs), [r["state"] for r in runs]


def test_the_waiting_sensor_is_deferred_to_the_triggerer(deployment):
    """While the stream is idle the sensor holds no worker slot: its task instance is DEFERRED."""
    deadline = time.monotonic() + 120
    states: list[str] = []
    while time.monotonic() < deadline:
        runs = deployment.api("/dags/claims_cdc/dagRuns?state=running&limit=5")["dag_runs"]
        for run in runs:
            ti = deployment.api(f"/dags/claims_cdc/dagRuns/{run['dag_run_id']}/taskInstances/stream_has_records")
            states.append(ti["state"])
            if ti["state"] == "deferred":
                return
        time.sleep(1)
    pytest.fail(f"the sensor was never seen deferred; states seen: {sorted(set(states))}")

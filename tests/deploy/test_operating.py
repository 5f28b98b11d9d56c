"""Operating it, against a running deployment (`make up`, started on free ports by the ``deployment``
fixture): the downstream DAG claims_by_status runs on its own after a merge (scheduled on the destination's
Asset) and its summary matches the destination; every claims_cdc run that merged carries a note in the UI
with its counts, written through the REST API, read back through it."""

from __future__ import annotations

import re
import time
import urllib.parse
from decimal import Decimal

import pytest

pytestmark = [pytest.mark.stack, pytest.mark.deployment]

NOTE = re.compile(r"^records (\d+) · merged \+(\d+) inserted, ~(\d+) updated, -(\d+) deleted · dead-lettered (\d+) · "
                  r"lag \d+ s \(>?=?\d+ records behind\)$")


def _query(deployment, sql: str, params: list | None = None) -> list[tuple]:
    with deployment.snowflake() as snow:
        cursor = snow.connection.cursor()
        cursor.execute(sql, params)
        return cursor.fetchall()


def _by_status(deployment, source: str) -> list[tuple]:
    if source == "destination":
        sql = ("SELECT claimStatus, COUNT(*), SUM(totalCharge) FROM CDC_DB.CDC_SCHEMA.openflow_insclaim_dest_tbl "
               "GROUP BY claimStatus")
    else:
        sql = "SELECT claimStatus, claims, total_charge FROM CDC_DB.CDC_SCHEMA.claims_by_status"
    return sorted((status, int(n), round(float(total or 0), 2)) for status, n, total in _query(deployment, sql))


def test_the_downstream_dag_runs_after_a_merge_and_its_summary_matches_the_destination(deployment):
    stamp = int(time.time())
    claims = {f"DOWN-{stamp}-{i}": status for i, status in enumerate(["Submitted", "Approved", "Approved"])}
    table = deployment.dynamodb_table()
    for claim_id, status in claims.items():
        table.put_item(Item={"claim_id": claim_id, "claimStatus": status, "totalCharge": Decimal("100.25")})

    deadline = time.monotonic() + 180
    landed = 0
    while time.monotonic() < deadline and landed < len(claims):
        landed = len(_query(deployment, "SELECT claimId FROM CDC_DB.CDC_SCHEMA.openflow_insclaim_dest_tbl "
                                        f"WHERE claimId LIKE 'DOWN-{stamp}-%'"))
        time.sleep(1)
    assert landed == len(claims), "the claims never reached the destination"

    # The merge's asset event queues a claims_by_status run; once one that started after the last merge has
    # succeeded, its summary is the destination's (nothing is written any more).
    deadline = time.monotonic() + 180
    summary = expected = runs = None
    while time.monotonic() < deadline:
        runs = deployment.api("/dags/claims_by_status/dagRuns?order_by=-start_date&limit=20")["dag_runs"]
        if runs and runs[0]["state"] == "success":
            summary, expected = _by_status(deployment, "summary"), _by_status(deployment, "destination")
            if summary == expected:
                break
        time.sleep(2)
    assert runs, "claims_by_status never ran"
    assert {r["run_type"] for r in runs} == {"asset_triggered"}, "claims_by_status ran for another reason"
    assert summary == expected and ("Approved", 2, 200.5) in summary, (summary, expected)
    events = deployment.api("/assets/events?source_dag_id=claims_cdc&source_task_id=merged_counts&limit=100"
                            "&order_by=-timestamp")["asset_events"]
    assert events and events[0]["uri"].startswith("snowflake://") and events[0]["uri"].endswith(
        "/CDC_DB/CDC_SCHEMA/openflow_insclaim_dest_tbl")
    assert sum(e["extra"]["inserted"] for e in events) >= len(claims)


def test_every_run_that_merged_carries_a_note_with_its_counts(deployment):
    deadline = time.monotonic() + 120
    noted: list[tuple[dict, dict]] = []
    while time.monotonic() < deadline and not noted:
        for run in deployment.api("/dags/claims_cdc/dagRuns?state=success&limit=100")["dag_runs"]:
            path = f"/dags/claims_cdc/dagRuns/{urllib.parse.quote(run['dag_run_id'], safe='')}"
            merged = deployment.api(f"{path}/taskInstances/merged_counts")
            if merged["state"] != "success":
                continue
            counts = deployment.api(f"{path}/taskInstances/merged_counts/xcomEntries/return_value")["value"]
            noted.append((deployment.api(path), counts))
        time.sleep(2)
    assert noted, "no claims_cdc run merged"
    for run, counts in noted:
        match = NOTE.match(run["note"] or "")
        assert match, run["note"]
        if isinstance(counts, str):
            import json

            counts = json.loads(counts)
        assert [int(match.group(i)) for i in (2, 3, 4)] == [counts["inserted"], counts["updated"], counts["deleted"]]
        assert "DOWN-" not in run["note"] and "LIVE-" not in run["note"]

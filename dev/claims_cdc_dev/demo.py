"""The seed's scenario on the local stack, with the seed's verification queries.

20 claims ingested; one "In Review" claim changed to "Rejected"; that claim deleted; a ``claims_cdc`` DAG
run (``airflow dags test``) after each step. Prints what the seed's queries return and exits non-zero
when a figure is not what the seed expects. Run it through ``make demo``. Values are fake (Faker).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from claims_cdc.settings import load_settings
from claims_cdc.snowflake import session
from claims_cdc_dev import generator

# The seed's verification queries, verbatim (the local stack uses the seed's table names).
SEED_COLUMNS = """select
    eventName,
    TO_TIMESTAMP(TO_NUMBER(eventCreationUnixTime) / 1000000) AS eventCreationUTC,
    claimId,
    claimStatus,
    paymentStatus,
    totalCharge,
    insurancePlan,
    memberId,
    providerName
"""
DEST_MODIFY = SEED_COLUMNS + "  from openflow_insclaim_dest_tbl where eventname = 'MODIFY';"
HIST_MODIFY = SEED_COLUMNS + "  from openflow_insclaim_event_hist_tbl where eventname = 'MODIFY' order by eventCreationUTC;"
HIST_REMOVE = SEED_COLUMNS + "  from openflow_insclaim_event_hist_tbl where eventname = 'REMOVE' order by eventCreationUTC;"
DELETED_CHECK = """SELECT *
FROM openflow_insclaim_dest_tbl
-- get the claim id from the event history table
WHERE claimid IN (
    SELECT claimid
    FROM openflow_insclaim_event_hist_tbl
    WHERE eventname = 'MODIFY'
);"""
COUNT_DEST = "select count(*) from openflow_insclaim_dest_tbl;"
HIST_INSERTS = "select * from openflow_insclaim_event_hist_tbl where eventname='INSERT';"
# The pipeline's own figures.
HISTORY_BY_EVENT = "select eventName, count(*) from openflow_insclaim_event_hist_tbl group by eventName order by 1"
STAGING_LEFT = "select count(*) from openflow_insclaim_cdc_tbl"
LAST_RECONCILIATION = (
    "select dynamodb_count, snowflake_count, status from cdc_reconciliation order by checked_at desc limit 1"
)


def run_dag() -> None:
    airflow = Path(sys.executable).with_name("airflow")
    started = time.monotonic()
    done = subprocess.run([str(airflow), "dags", "test", "claims_cdc"], capture_output=True, text=True, check=False)
    if done.returncode != 0 or "state=success" not in done.stdout + done.stderr:
        print((done.stdout + done.stderr)[-4000:])
        raise SystemExit("demo: the claims_cdc run failed (log above)")
    print(f"  claims_cdc run succeeded in {time.monotonic() - started:.1f}s")


def query(cursor: Any, sql: str, show: bool = True) -> list[tuple]:
    cursor.execute(sql)
    rows = cursor.fetchall()
    if show:
        print(f"\n  > {' '.join(sql.split())[:110]}{'...' if len(' '.join(sql.split())) > 110 else ''}")
        names = [d[0] for d in cursor.description]
        print("    " + " | ".join(names))
        for row in rows[:25]:
            print("    " + " | ".join("" if v is None else str(v) for v in row))
        print(f"    ({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return rows


def expect(label: str, actual: Any, wanted: Any, failures: list[str]) -> None:
    ok = actual == wanted
    print(f"  [{'ok' if ok else 'FAIL'}] {label}: {actual}" + ("" if ok else f" (expected {wanted})"))
    if not ok:
        failures.append(label)


def main() -> int:
    settings = load_settings()
    table = generator.claims_table(settings.aws_conn_id, settings.dynamodb_table)
    failures: list[str] = []
    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow:
        cursor = snow.connection.cursor()
        cursor.execute("USE SCHEMA CDC_DB.CDC_SCHEMA")

        print("\n== 1. Ingest 20 claims (python3 ingest_med_claims.py 20) ==")
        ids = generator.ingest(table, 20, seed=int(os.getenv("CDC_DEMO_SEED", "20")))
        print(f"  ingested {len(ids)} claims into DynamoDB")
        run_dag()
        expect("destination rows", query(cursor, COUNT_DEST)[0][0], 20, failures)
        inserts = query(cursor, HIST_INSERTS, show=False)
        expect("history INSERT events", len(inserts), 20, failures)

        print("\n== 2. Change one 'In Review' claim to 'Rejected' ==")
        claim_id = generator.set_status(table, "In Review", "Rejected")
        print(f"  claim {claim_id}: In Review -> Rejected")
        run_dag()
        modified = query(cursor, DEST_MODIFY)
        expect("destination MODIFY rows", [(r[2], r[3]) for r in modified], [(claim_id, "Rejected")], failures)
        query(cursor, HIST_MODIFY)

        print("\n== 3. Delete that claim ==")
        generator.delete(table, claim_id)
        print(f"  claim {claim_id} deleted from DynamoDB")
        run_dag()
        gone = query(cursor, DELETED_CHECK)
        expect("deleted claim rows left in the destination", len(gone), 0, failures)
        query(cursor, HIST_REMOVE)

        print("\n== Summary ==")
        history = dict(query(cursor, HISTORY_BY_EVENT))
        expect("history events", history, {"INSERT": 20, "MODIFY": 1, "REMOVE": 1}, failures)
        expect("destination rows", query(cursor, COUNT_DEST, show=False)[0][0], 19, failures)
        expect("staging rows left", query(cursor, STAGING_LEFT, show=False)[0][0], 0, failures)
        reconciled = query(cursor, LAST_RECONCILIATION, show=False)
        expect("last reconciliation", reconciled[0] if reconciled else None, (19, 19, "MATCH"), failures)
    if failures:
        print(f"\ndemo FAILED: {', '.join(failures)}")
        return 1
    print("\ndemo passed: DynamoDB and Snowflake agree after INSERT, MODIFY and REMOVE")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""
# claims_cdc_audit

The deep audit, daily by default: DynamoDB **InsuranceClaims** against `openflow_insclaim_dest_tbl`, key by
key and by content hash, then the repair of what differs. Count reconciliation (in `claims_cdc`) cannot see
a wrong value or a swapped key; this can.

| task | what it produces |
|---|---|
| `audit_plan` | the audit's id and its parallel Scan segments |
| `audit_segment` | one mapped task per segment: each item's key and *item hash* (the SHA-256 of the mapped columns the item fills, after the stream's transform) into `cdc_audit_keys` |
| `divergence` | the destination's rows hashed the same way and compared: *missing* (in DynamoDB only), *extra* (in the destination only), *different* (hashes differ); the keys (ids only) into `cdc_audit_divergence`, the counts into `cdc_audit_runs` |
| `repaired` | the divergent keys read again (BatchGetItem) and sent through the snapshot's ordered merge, stamped with the moment before the read: the item as it is now, or a tombstone for a key DynamoDB no longer has. A newer stream change still wins |
| `verified` | the divergent keys compared again: counts after the repair in `cdc_audit_runs` (status MATCH, REPAIRED or DIVERGENT), and per key in `cdc_audit_divergence.after_repair` |

A key that differs because its change is still in flight is repaired harmlessly (the same values, or the
newer change wins). Safe beside `claims_cdc` and safe to run twice. Ids, hashes and counts only: no task
logs or returns a value.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, get_current_context, task

from claims_cdc.mapping import load_mapping
from claims_cdc.settings import load_settings
from claims_cdc.side_dags import side_dag_arguments, side_run_id

SETTINGS = load_settings()
load_mapping(SETTINGS.mapping_path)


@dag(schedule="@daily", **side_dag_arguments(
    SETTINGS, __doc__, ["cdc", "dynamodb", "snowflake", "phi", "audit"],
    # Created paused, whatever the deployment's default: an audit while the pipeline is still catching up
    # "repairs" what the stream is about to deliver (and its merge takes the live batch's staged rows, so the
    # live merge's Asset event counts none of them). Unpause it once claims_cdc is caught up.
    is_paused_upon_creation=True,
    # An audit checks the table as it is now: a backfill of past days would only repeat it.
    allowed_run_types=["scheduled", "manual", "operator_triggered"],
    params={
        "segments": Param(
            4,
            type="integer",
            minimum=1,
            maximum=1_000,
            title="Scan segments",
            description="TotalSegments of the parallel Scan of the table, one mapped task each.",
        ),
        "repair": Param(
            True,
            type="boolean",
            title="Repair what differs",
            description="Off: find and record the divergent keys only.",
        ),
    },
))
def claims_cdc_audit():
    @task(execution_timeout=timedelta(minutes=5))
    def audit_plan() -> list[dict]:
        """The audit's id and its Scan segments."""
        from claims_cdc.audit import plan_audit

        return plan_audit(SETTINGS, int(get_current_context()["params"]["segments"]))

    @task(execution_timeout=timedelta(hours=1), map_index_template="segment {{ segment }}",
          doc_md="Scans one segment of the table: each item's key and item hash into cdc_audit_keys.")
    def audit_segment(part: dict) -> dict:
        from claims_cdc.audit import scan_segment

        get_current_context()["segment"] = part["segment"]
        return scan_segment(SETTINGS, part)

    @task(execution_timeout=timedelta(hours=1))
    def divergence(segments: list[dict]) -> dict:
        """Missing, extra and different keys, recorded (ids only) with their counts."""
        from claims_cdc.audit import find_divergence

        audit_id = next(s["audit_id"] for s in segments)
        return find_divergence(SETTINGS, audit_id, side_run_id())

    @task(execution_timeout=timedelta(hours=1))
    def repaired(found: dict) -> dict:
        """The divergent keys read again and merged in order, as the snapshot does."""
        from airflow.sdk.exceptions import AirflowSkipException

        from claims_cdc.audit import repair

        if not get_current_context()["params"]["repair"]:
            raise AirflowSkipException("repair=false: divergent keys recorded, not repaired")
        return repair(SETTINGS, found, side_run_id())

    @task(trigger_rule="none_failed", execution_timeout=timedelta(minutes=30))
    def verified(found: dict, repair_result: dict | None) -> dict:
        """The divergent keys compared again: the counts after the repair."""
        from claims_cdc.audit import verify

        return verify(SETTINGS, found, repair_result, side_run_id())

    found = divergence(audit_segment.expand(part=audit_plan()))
    verified(found, repaired(found))


claims_cdc_audit()

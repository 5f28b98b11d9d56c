"""End to end: the claims_cdc_audit DAG (dag.test()) against the local stack's servers, after claims_cdc."""

from __future__ import annotations

import pytest

from claims_cdc import aws
from claims_cdc_dev import generator
from helpers import destination_view, dynamodb_view, query, run_dag, run_dag_named, table, wait_for_stream

pytestmark = pytest.mark.stack

AUDIT_COUNTS = ("dynamodb_items, destination_rows, missing, extra, different, repaired, missing_after, extra_after, "
                "different_after, status")


def _audits(snow, settings) -> list[tuple]:
    return query(snow, f"SELECT {AUDIT_COUNTS} FROM {table(settings, settings.audit_table)} ORDER BY checked_at")


@pytest.fixture
def audited(settings, snow, forwarder):
    """Claims streamed and merged by claims_cdc, and the audit's tables empty."""
    for name in (settings.audit_table, settings.audit_divergence_table, settings.audit_keys_table):
        query(snow, f"DELETE FROM {table(settings, name)}")
    claims = generator.claims_table(settings.aws_conn_id, settings.dynamodb_table)
    ids = generator.ingest(claims, 20, seed=51)
    generator.set_status(claims, "", "Appealed", claim_id=ids[0])
    wait_for_stream(aws.kinesis_client(settings.aws_conn_id), settings.kinesis_stream, 21, settle=True)
    assert run_dag().state == "success"
    assert destination_view(snow, settings) == dynamodb_view(claims)
    return claims, ids


def test_audit_of_a_destination_equal_to_dynamodb_finds_nothing_by_content_hash(settings, snow, audited):
    assert run_dag_named("claims_cdc_audit", segments=3).state == "success"
    assert _audits(snow, settings) == [(20, 20, 0, 0, 0, 0, 0, 0, 0, "MATCH")]
    assert query(snow, f"SELECT COUNT(*) FROM {table(settings, settings.audit_divergence_table)}")[0][0] == 0


def test_audit_finds_and_repairs_rows_altered_deleted_and_added_by_hand(settings, snow, audited):
    claims, ids = audited
    dest = table(settings, settings.dest_table)
    query(snow, f"UPDATE {dest} SET totalCharge = totalCharge + 1 WHERE claimId = ?", [ids[3]])  # altered
    query(snow, f"DELETE FROM {dest} WHERE claimId = ?", [ids[4]])  # deleted
    query(snow, f"INSERT INTO {dest} (claimId, eventName, claimStatus, cdc_change_order) "  # added
                "SELECT 'CLM-BY-HAND', 'INSERT', 'Paid', ?", ["0" * 20 + "." + "0" * 64])
    assert destination_view(snow, settings) != dynamodb_view(claims)

    assert run_dag_named("claims_cdc_audit", segments=2).state == "success"

    assert destination_view(snow, settings) == dynamodb_view(claims)
    assert _audits(snow, settings) == [(20, 20, 1, 1, 1, 3, 0, 0, 0, "REPAIRED")]
    found = query(snow, f"SELECT claimId, kind, after_repair, repaired_at IS NOT NULL "
                        f"FROM {table(settings, settings.audit_divergence_table)} ORDER BY kind")
    assert found == [(ids[3], "different", None, True), ("CLM-BY-HAND", "extra", None, True),
                     (ids[4], "missing", None, True)]
    # The key DynamoDB never had is removed by a tombstone, which the history keeps as its REMOVE.
    assert query(snow, f"SELECT COUNT(*) FROM {table(settings, settings.tombstone_table)} "
                       "WHERE claimId = 'CLM-BY-HAND'")[0][0] == 1
    # A second audit finds nothing left.
    assert run_dag_named("claims_cdc_audit", segments=2).state == "success"
    assert _audits(snow, settings)[-1] == (20, 20, 0, 0, 0, 0, 0, 0, 0, "MATCH")


def test_audit_without_repair_records_the_divergent_keys_and_changes_nothing(settings, snow, audited):
    _, ids = audited
    dest = table(settings, settings.dest_table)
    query(snow, f"UPDATE {dest} SET patientFirstName = 'Swapped' WHERE claimId = ?", [ids[6]])
    before = destination_view(snow, settings)

    assert run_dag_named("claims_cdc_audit", repair=False).state == "success"
    assert destination_view(snow, settings) == before
    assert _audits(snow, settings) == [(20, 20, 0, 0, 1, 0, 0, 0, 1, "DIVERGENT")]
    assert query(snow, f"SELECT claimId, kind, after_repair FROM {table(settings, settings.audit_divergence_table)}"
                 ) == [(ids[6], "different", "different")]

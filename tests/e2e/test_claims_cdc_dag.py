"""End to end: the claims_cdc DAG (dag.test()) against the local stack's servers."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import boto3
import pytest

from claims_cdc import aws
from claims_cdc_dev import generator
from helpers import count, destination, kinesis_doc, query, run_dag, table, task_states, wait_for_stream

pytestmark = pytest.mark.stack


def test_seed_scenario_insert_modify_remove(settings, snow, forwarder):
    _seed_scenario(settings, snow)


def test_seed_scenario_under_duplicated_and_reordered_delivery(settings, snow, chaotic_forwarder):
    _seed_scenario(settings, snow)


def _seed_scenario(settings, snow):
    claims = generator.claims_table(settings.aws_conn_id, settings.dynamodb_table)
    kinesis = aws.kinesis_client(settings.aws_conn_id)

    ids = generator.ingest(claims, 20, seed=1)
    wait_for_stream(kinesis, settings.kinesis_stream, 20, settle=True)
    assert run_dag().state == "success"
    assert count(snow, settings, settings.dest_table) == 20
    assert count(snow, settings, settings.history_table, "WHERE eventName = 'INSERT'") == 20

    changed = generator.set_status(claims, "In Review", "Rejected")
    wait_for_stream(kinesis, settings.kinesis_stream, 21, settle=True)
    assert run_dag().state == "success"
    modified = query(snow, f"SELECT claimId, claimStatus FROM {table(settings, settings.dest_table)} "
                           "WHERE eventName = 'MODIFY'")
    assert modified == [(changed, "Rejected")]

    generator.delete(claims, changed)
    wait_for_stream(kinesis, settings.kinesis_stream, 22, settle=True)
    assert run_dag().state == "success"
    dest = destination(snow, settings)
    assert changed not in dest and set(dest) == set(ids) - {changed}
    history = dict(query(snow, f"SELECT eventName, COUNT(*) FROM {table(settings, settings.history_table)} "
                               "GROUP BY eventName"))
    assert history == {"INSERT": 20, "MODIFY": 1, "REMOVE": 1}
    assert count(snow, settings, settings.cdc_table) == 0
    last = query(snow, f"SELECT dynamodb_count, snowflake_count, status FROM "
                       f"{table(settings, settings.reconciliation_table)} ORDER BY checked_at DESC LIMIT 1")
    assert last == [(19, 19, "MATCH")]


def test_claim_written_with_plain_boto3_lands_with_every_mapped_column(settings, snow, stack, forwarder):
    claim = {
        "claim_id": "CLM-BOTO3-0001",
        "memberId": "MBR12345678",
        "insurancePlan": "Gold PPO",
        "claimStatus": "In Review",
        "paymentStatus": "Pending",
        "totalCharge": Decimal("1234.56"),
        "dateOfService": "2026-10-01",
        "billSubmitDate": "2026-10-05",
        "createdTimeStamp": "2026-10-05T08:09:10.123456",
        "diagnosisCodes": ["E11.9", "I10"],
        "procedureDetails": [
            {"code": "99213", "description": "Office visit", "charge": Decimal("200.5")},
            {"code": "80053", "description": "Metabolic panel", "charge": Decimal("1034.06")},
        ],
        "patient": {
            "firstName": "Ada", "lastName": "Lovelace", "gender": "F", "dob": "1980-12-10",
            "phone": "555-010-0199", "email": "ada@example.org",
            "address": {"street": "1 Main St", "city": "Springfield", "state": "IL", "zip": Decimal(62701)},
        },
        "provider": {
            "name": "Babbage Clinic", "npi": "1234567893",
            "address": {"street": "2 Engine Rd", "city": "Chicago", "state": "IL", "zip": Decimal(60601)},
        },
        "payer": {"name": "Aetna", "id": "60054", "contactNumber": "1-800-555-0100"},
    }
    dynamodb = boto3.resource("dynamodb", endpoint_url=stack.endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
    dynamodb.Table(settings.dynamodb_table).put_item(Item=claim)
    wait_for_stream(aws.kinesis_client(settings.aws_conn_id), settings.kinesis_stream, 1)

    assert run_dag().state == "success"

    cursor = snow.connection.cursor()
    cursor.execute(f"SELECT * FROM {table(settings, settings.dest_table)} WHERE claimId = ?", [claim["claim_id"]])
    values = cursor.fetchone()
    got = {d[0].lower(): v for d, v in zip(cursor.description, values, strict=True)}
    assert got["eventname"] == "INSERT"
    assert int(got["eventcreationunixtime"]) > 1_700_000_000_000_000  # microseconds
    assert got["claimid"] == "CLM-BOTO3-0001"
    assert json.loads(got["diagnosiscodes"]) == ["E11.9", "I10"]
    assert got["dateofservice"] == "2026-10-01"
    assert got["totalcharge"] == pytest.approx(1234.56)
    assert json.loads(got["proceduredetails"]) == [
        {"code": "99213", "description": "Office visit", "charge": 200.5},
        {"code": "80053", "description": "Metabolic panel", "charge": 1034.06},
    ]
    assert got["memberid"] == "MBR12345678"
    assert got["insuranceplan"] == "Gold PPO"
    assert (got["patientzip"], got["patientstate"], got["patientcity"], got["patientstreet"]) == (
        62701, "IL", "Springfield", "1 Main St")
    assert (got["patientgender"], got["patientdob"], got["patientlastname"], got["patientfirstname"]) == (
        "F", "1980-12-10", "Lovelace", "Ada")
    assert (got["patientphone"], got["patientemail"]) == ("555-010-0199", "ada@example.org")
    assert got["claimstatus"] == "In Review"
    assert got["createdtimestamp"].isoformat() == "2026-10-05T08:09:10.123456"
    assert (got["providername"], got["providernpi"], got["providerzip"], got["providerstate"],
            got["providercity"], got["providerstreet"]) == (
        "Babbage Clinic", "1234567893", 60601, "IL", "Chicago", "2 Engine Rd")
    assert got["billsubmitdate"] == "2026-10-05"
    assert (got["payername"], got["payerid"], got["payercontactnumber"]) == ("Aetna", "60054", "1-800-555-0100")
    assert got["paymentstatus"] == "Pending"


def test_run_on_an_idle_stream_ends_skipped_not_failed(settings, snow, clean_pipeline):
    dag_run = run_dag(sensor_timeout=2)
    assert dag_run.state == "success"
    states = task_states(dag_run)
    assert states.pop("alerts_checked") == "success"  # the alert checks run in idle runs too
    assert states.pop("removed_batch_files") == "success"  # batch-file clean-up runs in idle runs too
    assert states.pop("run_note") == "success"  # and so does the run's note ("no records", the lag)
    assert set(states.values()) == {"skipped"}
    assert count(snow, settings, settings.batch_table) == 0


def test_a_record_that_arrives_while_the_sensor_waits_is_read_by_that_same_run(settings, snow, clean_pipeline):
    """The extract is bounded by its own start, not the run's: what woke the deferred sensor is read now,
    not left for the next run (which, under @continuous, would cost a whole extra run of latency)."""
    import threading
    import time

    claim = {"claim_id": "CLM-LATE", "claimStatus": "Submitted", "totalCharge": Decimal(10)}

    def put_while_waiting():
        time.sleep(4)  # the run has started and its sensor is waiting in the (in-line) trigger
        aws.kinesis_client(settings.aws_conn_id).put_record(
            StreamName=settings.kinesis_stream, PartitionKey="CLM-LATE",
            Data=kinesis_doc("INSERT", claim, int(time.time() * 1_000_000), str(uuid.uuid4())))

    writer = threading.Thread(target=put_while_waiting)
    writer.start()
    dag_run = run_dag(sensor_timeout=60)
    writer.join()

    assert dag_run.state == "success"
    assert task_states(dag_run)["merged_counts"] == "success"
    assert destination(snow, settings) == {"CLM-LATE": ("INSERT", "Submitted")}

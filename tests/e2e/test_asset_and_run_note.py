"""dag.test() runs of claims_cdc against the local stack: the merge publishes the destination's Asset with
its counts, each run composes its note (counts only), and the downstream DAG claims_by_status, run after a
merge, leaves a summary that matches the destination."""

from __future__ import annotations

import json

import pytest

from claims_cdc import aws
from claims_cdc.assets import destination_asset
from helpers import RECENT_MICROS, fresh_metadata_connections, query, run_dag, table
from poison import change, claim_item, encode

pytestmark = pytest.mark.stack


def _asset_events(settings, run_id: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    fresh_metadata_connections()
    with create_session() as session:
        events = (session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                  .filter(AssetModel.uri == destination_asset(settings).uri, AssetEvent.source_run_id == run_id)
                  .all())
        assert all(e.source_task_id == "merged_counts" for e in events)
        return [dict(e.extra) for e in events]


def _return_value(dag_run, task_id: str):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id,
                                                 key="return_value").one()
        value = row.value
    return json.loads(value) if isinstance(value, str | bytes) else value


def _run_downstream():
    from airflow.dag_processing.dagbag import DagBag

    from claims_cdc.settings import PROJECT_ROOT

    fresh_metadata_connections()
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag("claims_by_status").test()


def test_merge_publishes_the_destination_asset_with_its_counts_and_each_run_notes_what_it_did(
        settings, snow, clean_pipeline):
    kinesis = aws.kinesis_client(settings.aws_conn_id)

    def put(doc) -> None:
        kinesis.put_record(StreamName=settings.kinesis_stream, PartitionKey=doc["dynamodb"]["Keys"]["claim_id"]["S"],
                           Data=encode(doc))

    for i in range(3):
        put(change(f"ASSET-{i}", RECENT_MICROS + i))
    put(change("ASSET-X", RECENT_MICROS + 3) | {"eventName": "UPSERT"})  # dead-lettered: an unknown event

    first = run_dag()
    assert first.state == "success"
    assert _asset_events(settings, first.run_id) == [
        {"inserted": 3, "updated": 0, "deleted": 0, "batches": 1, "dag_run_id": first.run_id}]
    note = _return_value(first, "run_note")
    assert note == {"note": "records 4 · merged +3 inserted, ~0 updated, -0 deleted · dead-lettered 1 · "
                            "lag 0 s (0 records behind)", "written": False}  # no API server under dag.test()

    put(change("ASSET-0", RECENT_MICROS + 10, "MODIFY", item=claim_item("ASSET-0", status="Approved")))
    put(change("ASSET-1", RECENT_MICROS + 11, "REMOVE"))
    second = run_dag()
    assert second.state == "success"
    assert _asset_events(settings, second.run_id) == [
        {"inserted": 0, "updated": 1, "deleted": 1, "batches": 1, "dag_run_id": second.run_id}]
    assert _return_value(second, "run_note")["note"].startswith(
        "records 2 · merged +0 inserted, ~1 updated, -1 deleted · dead-lettered 0 · lag 0 s")

    # The downstream DAG, run after the merge: its summary is the destination's, and a re-run changes nothing.
    expected = sorted(query(snow, f"SELECT claimStatus, COUNT(*), SUM(totalCharge) FROM "
                                  f"{table(settings, settings.dest_table)} GROUP BY claimStatus"))
    assert expected == [("Approved", 1, pytest.approx(141.22)), ("Submitted", 1, pytest.approx(141.22))]
    for _ in range(2):
        assert _run_downstream().state == "success"
        summary = sorted(query(snow, f"SELECT claimStatus, claims, total_charge FROM "
                                     f"{table(settings, settings.summary_table)}"))
        assert summary == expected

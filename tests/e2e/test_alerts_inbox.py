"""Alerts end to end: the claims_cdc DAG (dag.test()) against the local stack, its failure callbacks and its
alerts_checked task writing Airflow Variables and publishing through the Amazon provider's SnsNotifier to
the stack's SNS topic claims-cdc-alerts; the test reads what a user would, the SQS queue
claims-cdc-alerts-inbox subscribed to it (claims_cdc_dev.alerts_inbox, behind `make alerts`).

Every record written here carries a marker in its values; no alert may carry it.
"""

from __future__ import annotations

import time
import uuid

import pytest

from claims_cdc import aws
from claims_cdc.alerts import FAILED_RUNS_VARIABLE, KINDS, VARIABLE_PREFIX, VariableStore, open_alerts
from claims_cdc.settings import load_settings
from claims_cdc_dev import alerts_inbox
from helpers import RECENT_MICROS, count, fresh_metadata_connections, run_dag, task_states
from poison import change, claim_item, encode

pytestmark = pytest.mark.stack


@pytest.fixture
def inbox(stack, clean_pipeline):
    """The inbox queue, emptied, and no incident open (the Variables of earlier tests removed)."""
    sqs, url = alerts_inbox.inbox_client()
    alerts_inbox.read(sqs, url, drain=True)
    fresh_metadata_connections()
    store = VariableStore()
    for key in [VARIABLE_PREFIX + kind for kind in KINDS] + [FAILED_RUNS_VARIABLE]:
        if store.get(key) is not None:
            store.delete(key)
    return sqs, url


def _marked_claim(claim_id: str, marker: str) -> dict:
    item = claim_item(claim_id)
    item["claimStatus"] = {"S": f"Submitted {marker}"}
    item["patient"]["M"]["lastName"] = {"S": marker}
    item["payer"]["M"]["name"] = {"S": marker}
    return item


def _put(kinesis, settings, claim_id: str, marker: str, micros: int, hash_key: str | None = None) -> None:
    extra = {"ExplicitHashKey": hash_key} if hash_key is not None else {}
    kinesis.put_record(StreamName=settings.kinesis_stream, PartitionKey=claim_id,
                       Data=encode(change(claim_id, micros, item=_marked_claim(claim_id, marker))), **extra)


def _kinds(messages) -> list[tuple[str, str]]:
    """(ALERT or RECOVERED, kind) of each message, from its subject: "[claims-cdc] ALERT lag: ..."."""
    return [tuple(m["subject"].split()[1:3]) for m in messages]


def _no_value_in(messages, marker: str) -> None:
    for message in messages:
        assert marker not in message["subject"] and marker not in message["message"]


def test_a_task_failing_with_retries_spent_sends_one_alert_with_its_log_url_then_one_recovery(
        settings, inbox, monkeypatch, tmp_path):
    sqs, url = inbox
    marker = f"PHIMARK{uuid.uuid4().hex[:10]}"
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    for index in range(4):
        _put(kinesis, settings, f"CLM-ALERT-{index}", marker, RECENT_MICROS + index)
    # A batch root the shard tasks cannot write under (a plain file): each try fails (OSError, retried).
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("CDC_BATCH_ROOT", f"file://{blocker}/batches")
    monkeypatch.setenv("CDC_TASK_RETRIES", "1")
    monkeypatch.setenv("CDC_RETRY_DELAY_SECONDS", "1")

    failed = run_dag()

    assert failed.state == "failed"
    assert task_states(failed)["shard_batch"] == "failed"
    messages = alerts_inbox.read(sqs, url)
    assert _kinds(messages) == [("ALERT", "failure:")]  # both shards' tasks failed: one alert
    body = messages[0]["message"]
    assert "dag: claims_cdc\n" in body and f"run: {failed.run_id}\n" in body
    assert "task: shard_batch[" in body and "try: 2\n" in body  # retries spent: the second try
    assert "error: " in body and "reason: " in body
    log_line = next(line for line in body.splitlines() if line.startswith("log: "))
    assert log_line.startswith("log: http") and "/dags/claims_cdc/runs/" in log_line
    assert "/tasks/shard_batch/mapped/" in log_line and log_line.endswith("?try_number=2")
    fresh_metadata_connections()
    assert [a["kind"] for a in open_alerts(settings)] == ["failure"]

    # The pipeline stays broken: the next failed run sends nothing more.
    assert run_dag().state == "failed"
    assert len(alerts_inbox.read(sqs, url)) == 1

    # Fixed: the next run succeeds and sends one recovery message; the run after it, nothing.
    monkeypatch.delenv("CDC_BATCH_ROOT")
    fixed = run_dag()
    assert fixed.state == "success"
    assert task_states(fixed)["alerts_checked"] == "success"
    assert run_dag(sensor_timeout=2).state == "success"
    messages = alerts_inbox.read(sqs, url)
    assert _kinds(messages) == [("ALERT", "failure:"), ("RECOVERED", "failure:")]
    assert f"run: {fixed.run_id}\n" in messages[1]["message"]
    fresh_metadata_connections()
    assert open_alerts(settings) == []
    _no_value_in(messages, marker)


def test_lag_alert_fires_when_a_run_stops_behind_the_stream_and_recovers_when_caught_up(
        settings, snow, inbox, monkeypatch):
    sqs, url = inbox
    marker = f"PHIMARK{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("CDC_LAG_ALERT_SECONDS", "1")
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    # Two changes on the first shard, 2.5 s apart; a run capped at one record a shard reads the first and
    # stops 2.5 s behind the shard's tip (Kinesis' MillisBehindLatest).
    _put(kinesis, settings, "CLM-LAG-1", marker, RECENT_MICROS, hash_key="0")
    time.sleep(2.5)
    _put(kinesis, settings, "CLM-LAG-2", marker, RECENT_MICROS + 1, hash_key="0")

    assert run_dag(max_records=2).state == "success"
    messages = alerts_inbox.read(sqs, url)
    assert _kinds(messages) == [("ALERT", "lag:")]
    seconds = float(next(line for line in messages[0]["message"].splitlines()
                         if line.startswith("kinesis_seconds_behind: ")).split(": ")[1])
    assert 2.0 <= seconds < 60
    fresh_metadata_connections()
    assert [a["kind"] for a in open_alerts(load_settings())] == ["lag"]

    assert run_dag().state == "success"  # reads the rest: caught up
    messages = alerts_inbox.read(sqs, url)
    assert _kinds(messages) == [("ALERT", "lag:"), ("RECOVERED", "lag:")]
    assert count(snow, settings, settings.dest_table) == 2
    _no_value_in(messages, marker)


def test_new_dead_letters_alert_once_with_counts_and_reasons_and_no_value(settings, inbox):
    sqs, url = inbox
    marker = f"PHIMARK{uuid.uuid4().hex[:10]}"
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    for index in range(2):
        kinesis.put_record(StreamName=settings.kinesis_stream, PartitionKey=f"bad-{index}",
                           Data=f'{{"not json {marker}'.encode())
    _put(kinesis, settings, "CLM-DL-1", marker, RECENT_MICROS)

    assert run_dag().state == "success"
    kinesis.put_record(StreamName=settings.kinesis_stream, PartitionKey="bad-2", Data=f"{marker}".encode())
    assert run_dag().state == "success"  # more dead letters while the incident is open: no second alert

    messages = alerts_inbox.read(sqs, url)
    assert _kinds(messages) == [("ALERT", "dead_letters:")]
    body = messages[0]["message"]
    assert "new: 2\n" in body and "waiting: 2\n" in body and "reasons: 2 " in body
    _no_value_in(messages, marker)

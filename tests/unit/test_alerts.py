"""Incidents open once, stay quiet while open, recover once; alerts carry ids and one-line reasons, never
values. Here with a dict for the Variables and a list for the channels; tests/e2e/test_alerts_inbox.py runs the
same code through the DAG, Airflow Variables, SNS and the SQS inbox."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from claims_cdc import alerts
from claims_cdc.alerts import Incidents, check_run, one_line_reason, open_alerts, run_failed, task_failed
from claims_cdc.settings import ConfigError, Settings, load_settings

SETTINGS = replace(Settings(), alert_sns_topic_arn="arn:aws:sns:us-east-1:123456789012:claims-cdc-alerts",
                   lag_alert_seconds=60, drift_alert_runs=2)
MARKER = "PHI-MARKER-4242"


class DictStore:
    def __init__(self):
        self.data: dict[str, dict] = {}
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            return self.data.get(key)

    def set(self, key, value):
        with self.lock:
            self.data[key] = dict(value)

    def delete(self, key):
        with self.lock:
            self.data.pop(key, None)


class Outbox(list):
    def __call__(self, settings, subject, body):
        self.append((subject, body))
        return ["sns"]


def _incidents(settle: float = 0.0):
    outbox = Outbox()
    return Incidents(SETTINGS, DictStore(), outbox, settle=settle), outbox


def _context(error: BaseException, task_id="merged_counts", map_index=-1, try_number=4):
    ti = SimpleNamespace(dag_id="claims_cdc", task_id=task_id, run_id="manual__2026-11-26T00:00:00+00:00",
                         try_number=try_number, map_index=map_index,
                         log_url="http://127.0.0.1:8080/dags/claims_cdc/runs/r/tasks/merged_counts?try_number=4")
    return {"ti": ti, "exception": error}


def test_a_task_failure_opens_one_alert_with_ids_try_error_class_reason_and_log_url():
    incidents, outbox = _incidents()

    assert task_failed(SETTINGS, _context(RuntimeError("Snowflake did not answer\nsecond line")), incidents)

    [(subject, body)] = outbox
    assert subject.startswith("[claims-cdc] ALERT failure: merged_counts failed (RuntimeError)")
    assert len(subject) <= 100
    assert "dag: claims_cdc\n" in body and "task: merged_counts\n" in body and "try: 4\n" in body
    assert "run: manual__2026-11-26T00:00:00+00:00\n" in body
    assert "error: RuntimeError\n" in body and "reason: Snowflake did not answer\n" in body
    assert "second line" not in body
    assert "log: http://127.0.0.1:8080/dags/claims_cdc/runs/r/tasks/merged_counts?try_number=4\n" in body


def test_a_second_failure_while_open_sends_nothing_and_a_successful_run_sends_one_recovery():
    incidents, outbox = _incidents()
    task_failed(SETTINGS, _context(RuntimeError("down")), incidents)
    task_failed(SETTINGS, _context(RuntimeError("down"), task_id="stream_has_records"), incidents)
    run_failed(SETTINGS, {"dag_run": SimpleNamespace(dag_id="claims_cdc", run_id="r1"), "reason": "task_failure"},
               5, incidents)
    assert len(outbox) == 1

    result = check_run(SETTINGS, "r2", None, incidents=incidents, measure=lambda s: {})
    check_run(SETTINGS, "r3", None, incidents=incidents, measure=lambda s: {})

    assert result["closed"] == ["failure"]
    assert len(outbox) == 2 and outbox[1][0].startswith("[claims-cdc] RECOVERED failure: run r2 succeeded")
    assert "opened_at: " in outbox[1][1] and "recovered_at: " in outbox[1][1]
    # Recovered, the next failure is a new incident: one alert again.
    task_failed(SETTINGS, _context(RuntimeError("down")), incidents)
    assert len(outbox) == 3


def test_two_processes_opening_the_same_incident_at_once_send_one_alert():
    store, outbox = DictStore(), Outbox()
    barrier = threading.Barrier(4)

    def fail(index):
        barrier.wait()
        task_failed(SETTINGS, _context(OSError("disk"), task_id="shard_batch", map_index=index),
                    Incidents(SETTINGS, store, outbox, settle=0.3))

    threads = [threading.Thread(target=fail, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(outbox) == 1
    assert "task: shard_batch[" in outbox[0][1]


def test_an_alert_no_channel_took_is_withdrawn_so_the_next_failure_tries_again():
    store, tries = DictStore(), []

    def down(settings, subject, body):
        tries.append(subject)
        return []

    assert not Incidents(SETTINGS, store, down, settle=0).open("failure", "x")
    assert open_alerts(SETTINGS, store) == []
    assert not Incidents(SETTINGS, store, down, settle=0).open("failure", "x")
    assert len(tries) == 2


def test_the_reason_is_the_first_line_without_quoted_text_unless_the_error_is_the_pipelines_own():
    foreign = ValueError(f"could not convert string to float: '{MARKER}' in column \"{MARKER}\"\nrow 7")
    assert MARKER not in one_line_reason(foreign)
    assert one_line_reason(foreign) == "could not convert string to float: '…' in column '…'"

    from claims_cdc.kinesis_reader import StreamNotFound

    own = StreamNotFound("InsuranceClaimsStream")
    assert "'InsuranceClaimsStream'" in one_line_reason(own)
    wrapped = RuntimeError(f"task failed: '{MARKER}'")
    wrapped.__cause__ = own
    assert "'…'" not in one_line_reason(wrapped)  # the pipeline's own error, wrapped (AirflowFailException)
    assert len(one_line_reason(RuntimeError("x" * 1000))) == alerts.MAX_REASON


def test_a_checkpoint_gap_opens_the_retention_gap_alert_not_the_failure_alert():
    from airflow.sdk.exceptions import AirflowFailException

    from claims_cdc.kinesis_reader import CheckpointGap

    incidents, outbox = _incidents()
    error = AirflowFailException("shard shardId-000000000000: records after the checkpoint may have expired")
    error.__cause__ = CheckpointGap("shard shardId-000000000000")
    task_failed(SETTINGS, _context(error, task_id="shard_plan"), incidents)

    assert [a["kind"] for a in open_alerts(SETTINGS, incidents.store)] == ["retention_gap"]
    assert "accept-gap" in outbox[0][1]


def test_the_fifth_failed_run_in_a_row_opens_the_paused_alert_once():
    incidents, outbox = _incidents()
    for number in range(1, 7):
        run_failed(SETTINGS, {"dag_run": SimpleNamespace(dag_id="claims_cdc", run_id=f"r{number}"),
                              "reason": "task_failure"}, 5, incidents)
    kinds = [subject.split()[2].rstrip(":") for subject, _ in outbox]
    assert kinds == ["failure", "paused"]
    assert "failed_runs_in_a_row: 5" in outbox[1][1]
    check_run(SETTINGS, "r7", None, incidents=incidents, measure=lambda s: {})
    assert sorted(s.split()[2].rstrip(":") for s, _ in outbox[2:]) == ["failure", "paused"]
    assert incidents.store.get(alerts.FAILED_RUNS_VARIABLE) is None


def _batch(millis: int, rejected: int = 0):
    return {"batch_id": "b1", "rows_rejected": rejected,
            "shards": [{"shard_id": "shardId-000000000000", "millis_behind_latest": millis},
                       {"shard_id": "shardId-000000000001", "millis_behind_latest": 0}]}


def test_lag_from_kinesis_opens_once_and_recovers_once():
    incidents, outbox = _incidents()
    opened = check_run(SETTINGS, "r1", _batch(90_000), incidents=incidents, measure=lambda s: {})
    again = check_run(SETTINGS, "r2", _batch(120_000), incidents=incidents, measure=lambda s: {})
    recovered = check_run(SETTINGS, "r3", _batch(0), incidents=incidents, measure=lambda s: {})

    assert (opened["opened"], again["opened"], recovered["closed"]) == (["lag"], [], ["lag"])
    assert [s.split()[1:3] for s, _ in outbox] == [["ALERT", "lag:"], ["RECOVERED", "lag:"]]
    assert "kinesis_seconds_behind: 90.0" in outbox[0][1]


def test_lag_from_the_staging_table_is_the_age_of_its_oldest_change():
    incidents, outbox = _incidents()
    now = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    oldest = int((now - timedelta(minutes=10)).timestamp() * 1_000_000)
    result = check_run(SETTINGS, "r1", None, now=now, incidents=incidents,
                       measure=lambda s: {"oldest_unmerged_micros": oldest, "unmerged_rows": 3})
    assert result["lag_seconds"] == 600 and result["opened"] == ["lag"]
    assert "staging_rows: 3" in outbox[0][1]


def test_new_dead_letters_alert_with_counts_and_reasons_once_and_recover_when_none_waits():
    incidents, outbox = _incidents()
    waiting = {"dynamodb.Keys has no claim_id": 2, "eventName is not INSERT, MODIFY or REMOVE": 1}
    check_run(SETTINGS, "r1", _batch(0, rejected=3), incidents=incidents,
              measure=lambda s: {"dead_letters_waiting": waiting})
    check_run(SETTINGS, "r2", _batch(0, rejected=1), incidents=incidents,
              measure=lambda s: {"dead_letters_waiting": {**waiting, "x": 1}})
    check_run(SETTINGS, "r3", _batch(0), incidents=incidents, measure=lambda s: {"dead_letters_waiting": {}})

    assert len(outbox) == 2
    assert "new: 3\n" in outbox[0][1] and "waiting: 3\n" in outbox[0][1]
    assert "reasons: 2 dynamodb.Keys has no claim_id; 1 eventName is not INSERT, MODIFY or REMOVE" in outbox[0][1]
    assert outbox[1][0].startswith("[claims-cdc] RECOVERED dead_letters")


def test_drift_opens_only_after_more_than_n_differing_reconciliations_and_recovers_on_a_match():
    incidents, outbox = _incidents()
    for statuses in (["MISMATCH", "MISMATCH", "MATCH"], ["MISMATCH"] * 3, ["MISMATCH"] * 4, ["MATCH"]):
        check_run(SETTINGS, "r", None, incidents=incidents, measure=lambda s, st=statuses: {"recent_reconciliations": st})
    assert [s.split()[1:3] for s, _ in outbox] == [["ALERT", "drift:"], ["RECOVERED", "drift:"]]
    assert "reconciliations_differing: 3" in outbox[0][1]


def test_open_alerts_lists_kind_opened_at_and_summary():
    incidents, _ = _incidents()
    incidents.open("lag", "oldest unmerged change is 700 s old (limit 60 s)")
    [alert] = open_alerts(SETTINGS, incidents.store)
    assert alert["kind"] == "lag" and alert["summary"].startswith("oldest unmerged change")
    assert datetime.fromisoformat(alert["opened_at"]).tzinfo is not None


def test_without_any_channel_incidents_are_still_tracked_and_only_logged():
    settings = replace(SETTINGS, alert_sns_topic_arn="")
    incidents = Incidents(settings, DictStore(), settle=0)
    assert incidents.open("failure", "x")
    assert [a["kind"] for a in open_alerts(settings, incidents.store)] == ["failure"]


@pytest.mark.parametrize(("env", "message"), [
    ({"CDC_ALERT_SNS_TOPIC_ARN": "claims-cdc-alerts"}, "CDC_ALERT_SNS_TOPIC_ARN"),
    ({"CDC_ALERT_EMAIL_TO": "ops@example.com, not-an-address"}, "CDC_ALERT_EMAIL_TO"),
    ({"CDC_LAG_ALERT_SECONDS": "0"}, "CDC_LAG_ALERT_SECONDS"),
    ({"CDC_DRIFT_ALERT_RUNS": "100"}, "CDC_DRIFT_ALERT_RUNS"),
    ({"CDC_RUN_DEADLINE_SECONDS": "300"}, "CDC_RUN_DEADLINE_SECONDS"),
    ({"CDC_TASK_RETRIES": "-1"}, "CDC_TASK_RETRIES"),
    ({"CDC_ALERT_SLACK_CONN_ID": "slack_alerts", "AIRFLOW_CONN_SLACK_ALERTS": "not a connection"},
     "AIRFLOW_CONN_SLACK_ALERTS"),
])
def test_a_bad_alert_setting_fails_naming_it(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_alert_settings_are_read_and_name_their_channels():
    settings = load_settings({"CDC_ALERT_SNS_TOPIC_ARN": SETTINGS.alert_sns_topic_arn,
                              "CDC_ALERT_EMAIL_TO": "ops@example.com, oncall@example.com",
                              "CDC_ALERT_SLACK_CONN_ID": "slack_alerts", "CDC_LAG_ALERT_SECONDS": "120",
                              "CDC_RUN_DEADLINE_SECONDS": "0", "CDC_TASK_RETRIES": "1"})
    assert settings.alert_email_to == ("ops@example.com", "oncall@example.com")
    assert settings.alert_channels() == ["sns", "slack", "email"]
    assert (settings.lag_alert_seconds, settings.run_deadline_seconds, settings.task_retries) == (120, 0, 1)


def test_the_deadline_callback_opens_the_overrun_alert_once_from_the_triggerers_context(monkeypatch):
    """Airflow's Deadline Alert calls ``run_overran`` in the triggerer with a small context: the run as the
    REST API shows it, and the deadline. (Settings come from the environment there.)"""
    import asyncio

    store, outbox = DictStore(), Outbox()
    monkeypatch.setattr(alerts, "VariableStore", lambda: store)
    monkeypatch.setattr(alerts, "send", outbox)
    monkeypatch.setattr(alerts, "SETTLE_SECONDS", 0)
    monkeypatch.setenv("CDC_ALERT_SNS_TOPIC_ARN", SETTINGS.alert_sns_topic_arn)
    context = {"dag_run": {"dag_id": "claims_cdc", "dag_run_id": "scheduled__2026-11-26T01:00:00+00:00"},
               "deadline": {"id": "0199", "deadline_time": "2026-11-26T02:00:00+00:00"}}

    asyncio.run(alerts.run_overran(context=context))
    asyncio.run(alerts.run_overran(context=context))

    [(subject, body)] = outbox
    assert subject.startswith("[claims-cdc] ALERT overrun: run scheduled__2026-11-26T01:00:00+00:00 is still going")
    assert "deadline: 2026-11-26T02:00:00+00:00\n" in body and "/dags/claims_cdc/runs/scheduled__" in body
    assert [a["kind"] for a in open_alerts(SETTINGS, store)] == ["overrun"]


def test_a_failed_run_of_a_side_dag_sends_one_alert_each_time_and_opens_no_incident(monkeypatch):
    """Snapshot, replay, audit and the downstream summary run when a person (or the day, or a merge) starts
    them: each failed run alerts once, with its DAG, run, reason and link, and leaves no incident open (their
    recovery is a person's next run, which nothing could announce)."""
    store, outbox = DictStore(), Outbox()
    monkeypatch.setattr(alerts, "VariableStore", lambda: store)
    monkeypatch.setattr(alerts, "send", outbox)
    monkeypatch.setenv("CDC_ALERT_SNS_TOPIC_ARN", SETTINGS.alert_sns_topic_arn)
    run = SimpleNamespace(dag_id="claims_cdc_snapshot", run_id="manual__2026-11-26T03:00:00+00:00")

    alerts.side_run_failed({"dag_run": run, "reason": "task_failure"})
    alerts.side_run_failed({"dag_run": run, "reason": "task_failure"})

    assert len(outbox) == 2
    subject, body = outbox[0]
    assert subject == "[claims-cdc] ALERT failure: claims_cdc_snapshot run manual__2026-11-26T03:00:00+00:00 failed"
    assert "dag: claims_cdc_snapshot\n" in body and "reason: task_failure\n" in body
    assert "/dags/claims_cdc_snapshot/runs/manual__2026-11-26T03%3A00%3A00%2B00%3A00" in body
    assert open_alerts(SETTINGS, store) == []

"""The sensor's own logic, offline: how it resumes from the trigger's events and reads its templated arguments.

Its looks at the stream and the checkpoints run against the local stack in tests/integration/test_sensor.py.
"""

from __future__ import annotations

import re

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, AirflowSkipException

from claims_cdc.sensors import KinesisStreamRecordsSensor, KinesisTriggerError
from claims_cdc.settings import Settings


def sensor(**kwargs) -> KinesisStreamRecordsSensor:
    return KinesisStreamRecordsSensor(task_id="stream_has_records", settings=Settings(), **kwargs)


def resume(waiting: KinesisStreamRecordsSensor, event) -> None:
    """What the task runner does when the trigger fires: resume at execute_complete with the event."""
    waiting.resume_execution("execute_complete", {"event": event}, {})


def test_records_event_resumes_as_success():
    assert sensor(timeout=7).execute_complete({}, {"status": "records", "looks": 3}) is None


def test_timeout_event_skips_the_run_and_names_the_timeout(capfd):
    with pytest.raises(AirflowSkipException):
        resume(sensor(timeout=7), {"status": "timeout", "looks": 5})
    assert "no records within 7s (5 looks); the run ends as skipped" in capfd.readouterr().out


def test_timeout_event_fails_when_soft_fail_is_off():
    with pytest.raises(AirflowSensorTimeout):
        resume(sensor(timeout=7, soft_fail=False), {"status": "timeout", "looks": 5})


def test_error_event_fails_so_the_task_retries_instead_of_skipping():
    # A RuntimeError, not a sensor timeout: soft_fail must not turn a broken look into a quiet skip.
    with pytest.raises(KinesisTriggerError, match="ExpiredToken"):
        resume(sensor(timeout=7), {"status": "error", "error": "ExpiredToken: the token expired", "looks": 1})


def test_an_error_event_no_retry_can_fix_fails_the_task_at_once_despite_soft_fail():
    waiting = sensor(timeout=7)
    assert waiting.soft_fail  # the default: a timeout skips the run, but this must not
    message = "CDC_KINESIS_STREAM: the Kinesis stream 'NoSuchStream' does not exist"
    with pytest.raises(AirflowFailException, match=re.escape(message)):
        resume(waiting, {"status": "error", "error": message, "retry": False, "looks": 0})


def test_a_poke_that_fails_without_retry_fails_the_task_despite_soft_fail(monkeypatch):
    """poke mode: BaseSensorOperator would turn an AirflowFailException from poke into a skip under soft_fail."""
    from claims_cdc import pipeline

    def missing_stream(_settings, checkpoints=None):
        raise AirflowFailException("CDC_KINESIS_STREAM: the Kinesis stream 'NoSuchStream' does not exist")

    monkeypatch.setattr(pipeline, "stream_has_records", missing_stream)
    waiting = sensor(timeout=7, poke_interval=0.01, deferrable=False)
    with pytest.raises(AirflowFailException, match="CDC_KINESIS_STREAM"):
        waiting.execute({})


@pytest.mark.parametrize("event", [None, {}, {"status": "done"}, ["records"]], ids=["none", "empty", "unknown",
                                                                                        "list"])
def test_an_event_the_trigger_never_fires_fails_the_task(event):
    with pytest.raises(KinesisTriggerError, match="unexpected event"):
        resume(sensor(timeout=7), event)


def test_templated_timeout_is_read_after_rendering():
    waiting = sensor(timeout="{{ params.sensor_timeout }}", poke_interval="{{ params.poke }}")
    waiting.timeout, waiting.poke_interval = "3", "0.5"  # what Airflow's rendering leaves
    with pytest.raises(AirflowSkipException):
        resume(waiting, {"status": "timeout", "looks": 2})
    assert (waiting.timeout, waiting.poke_interval) == (3.0, 0.5)


@pytest.mark.parametrize("field, value", [("timeout", "soon"), ("timeout", "-1"), ("poke_interval", "nan")])
def test_a_rendered_value_that_is_not_seconds_fails_at_once_naming_the_argument(field, value):
    waiting = sensor(timeout="{{ params.sensor_timeout }}", poke_interval="{{ params.poke }}")
    waiting.timeout, waiting.poke_interval = "3", "0.5"
    setattr(waiting, field, value)
    # Through resume_execution, as the task runner resumes it: soft_fail must not turn this into a skip.
    with pytest.raises(AirflowFailException, match=f"{field}="):
        resume(waiting, {"status": "records", "looks": 1})


def test_explicit_arguments_win_over_the_settings():
    settings = Settings(kinesis_stream="FromSettings", aws_conn_id="aws_settings", snowflake_conn_id="sf_settings")
    waiting = KinesisStreamRecordsSensor(task_id="s", settings=settings, stream_name="Given", aws_conn_id="aws_given",
                                         timeout=5)
    resolved = waiting._resolve()
    assert (resolved.kinesis_stream, resolved.aws_conn_id, resolved.snowflake_conn_id) == (
        "Given", "aws_given", "sf_settings")


def test_deferrable_follows_airflows_default_deferrable_setting(monkeypatch):
    """The class default is read from [operators] default_deferrable when the module is imported."""
    import importlib

    from claims_cdc import sensors

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    try:
        assert importlib.reload(sensors).KinesisStreamRecordsSensor(
            task_id="s", settings=Settings(), timeout=5).deferrable is True
        monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")
        assert importlib.reload(sensors).KinesisStreamRecordsSensor(
            task_id="s", settings=Settings(), timeout=5).deferrable is False
    finally:
        monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE")
        importlib.reload(sensors)

"""The sensor's poke against moto (Kinesis) and fakesnow (checkpoints)."""

from __future__ import annotations

import pytest

from claims_cdc import aws, warehouse
from claims_cdc.sensors import KinesisStreamRecordsSensor

pytestmark = pytest.mark.stack


def test_poke_is_false_before_records_and_true_after(settings, clean_pipeline):
    sensor = KinesisStreamRecordsSensor(task_id="stream_has_records", timeout=5, poke_interval=1)
    assert sensor.poke({}) is False
    aws.kinesis_client(settings).put_record(StreamName=settings.kinesis_stream, Data=b"{}", PartitionKey="c")
    assert sensor.poke({}) is True


def test_poke_reads_positions_from_the_snowflake_checkpoints(settings, mapping, snow, clean_pipeline):
    sent = aws.kinesis_client(settings).put_record(StreamName=settings.kinesis_stream, Data=b"{}", PartitionKey="c")
    sensor = KinesisStreamRecordsSensor(task_id="stream_has_records", timeout=5, poke_interval=1)
    assert sensor.poke({}) is True
    warehouse.stage_batch(
        snow, settings, mapping, batch_id="b1", dag_run_id="test", records_read=1, rows=[], rejected=[],
        shards=[{"shard_id": sent["ShardId"], "parent_shard_ids": [], "start": None,
                 "end": sent["SequenceNumber"], "records": 1, "drained": False}],
    )
    assert sensor.poke({}) is False


def test_sensor_is_soft_fail_so_an_idle_stream_skips():
    sensor = KinesisStreamRecordsSensor(task_id="stream_has_records", timeout=5, poke_interval=1)
    assert sensor.soft_fail is True


# --- the deferrable path: the trigger in the triggerer, and the sensor around it ---

def _first_event(trigger):
    import asyncio

    async def first():
        async for event in trigger.run():
            return event.payload
        return None

    return asyncio.run(first())


def test_trigger_fires_on_records_without_consuming_them_or_moving_a_checkpoint(settings, mapping, snow,
                                                                                 clean_pipeline):
    import time

    from claims_cdc.kinesis_reader import read_batch
    from claims_cdc.triggers import KinesisRecordsTrigger

    kinesis = aws.kinesis_client(settings)
    kinesis.put_record(StreamName=settings.kinesis_stream, Data=b"{}", PartitionKey="c")
    before = warehouse.read_checkpoints(snow, settings, mapping)

    event = _first_event(KinesisRecordsTrigger(poke_interval=0.2, deadline=time.time() + 20))

    assert event["status"] == "records"
    assert warehouse.read_checkpoints(snow, settings, mapping) == before
    again = read_batch(kinesis, settings.kinesis_stream, before, max_records=10, page_limit=10)
    assert len(again.records) == 1  # still there for the run's extract


def test_trigger_waits_for_a_record_that_arrives_later(settings, clean_pipeline):
    import threading
    import time

    from claims_cdc.triggers import KinesisRecordsTrigger

    def put_later():
        time.sleep(1.5)
        aws.kinesis_client(settings).put_record(StreamName=settings.kinesis_stream, Data=b"{}", PartitionKey="c")

    threading.Thread(target=put_later).start()
    event = _first_event(KinesisRecordsTrigger(poke_interval=0.2, deadline=time.time() + 30))
    assert event["status"] == "records"
    assert event["looks"] > 1


def test_trigger_times_out_on_an_idle_stream(settings, clean_pipeline):
    import time

    from claims_cdc.triggers import KinesisRecordsTrigger

    event = _first_event(KinesisRecordsTrigger(poke_interval=0.2, deadline=time.time() + 1))
    assert event["status"] == "timeout"


def test_trigger_reports_an_error_instead_of_waiting_forever(settings, clean_pipeline, monkeypatch):
    import time

    from claims_cdc.triggers import KinesisRecordsTrigger

    monkeypatch.setenv("CDC_KINESIS_STREAM", "NoSuchStream")
    event = _first_event(KinesisRecordsTrigger(poke_interval=0.2, deadline=time.time() + 30))
    assert event["status"] == "error"
    assert "NoSuchStream" in event["error"] or "ResourceNotFound" in event["error"]


def test_trigger_serializes_to_its_import_path_and_round_trips():
    from claims_cdc.triggers import KinesisRecordsTrigger

    path, kwargs = KinesisRecordsTrigger(poke_interval=2, deadline=123.5).serialize()
    assert path == "claims_cdc.triggers.KinesisRecordsTrigger"
    assert KinesisRecordsTrigger(**kwargs).serialize() == (path, kwargs)


def test_sensor_defers_when_the_stream_is_idle(settings, clean_pipeline):
    from airflow.sdk.exceptions import TaskDeferred

    sensor = KinesisStreamRecordsSensor(task_id="stream_has_records", timeout=7, poke_interval=1)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({"params": {"sensor_timeout": 9}})
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.trigger.poke_interval == 1
    assert deferred.value.timeout.total_seconds() == 9 + 60  # the run's Param, plus the grace


def test_sensor_does_not_defer_when_records_are_waiting(settings, clean_pipeline):
    aws.kinesis_client(settings).put_record(StreamName=settings.kinesis_stream, Data=b"{}", PartitionKey="c")
    sensor = KinesisStreamRecordsSensor(task_id="stream_has_records", timeout=7, poke_interval=1)
    assert sensor.execute({"params": {}}) is None


def test_sensor_resumes_skipped_on_timeout_and_failed_on_error():
    from airflow.sdk.exceptions import AirflowSkipException

    from claims_cdc.sensors import KinesisTriggerError

    sensor = KinesisStreamRecordsSensor(task_id="stream_has_records", timeout=7, poke_interval=1)
    assert sensor.execute_complete({}, {"status": "records", "looks": 3}) is None
    with pytest.raises(AirflowSkipException):
        sensor.resume_execution("execute_complete", {"event": {"status": "timeout", "looks": 5}}, {})
    # The reason logged names the run's own timeout (the Param), not the operator's default.
    resumed = KinesisStreamRecordsSensor(task_id="stream_has_records", timeout=600, poke_interval=1)
    with pytest.raises(AirflowSkipException):
        resumed.resume_execution("execute_complete", {"event": {"status": "timeout", "looks": 2}},
                                 {"params": {"sensor_timeout": 3}})
    assert resumed.timeout == 3
    # An error is not "no records": it must fail (and retry), not hide behind soft_fail as a skip.
    with pytest.raises(KinesisTriggerError, match="ExpiredToken"):
        sensor.resume_execution("execute_complete", {"event": {"status": "error", "error": "ExpiredToken"}}, {})


def test_sensor_still_pokes_in_a_worker_when_not_deferrable(settings, clean_pipeline):
    aws.kinesis_client(settings).put_record(StreamName=settings.kinesis_stream, Data=b"{}", PartitionKey="c")
    sensor = KinesisStreamRecordsSensor(task_id="stream_has_records", timeout=5, poke_interval=0.2,
                                        deferrable=False, mode="poke")
    assert sensor.execute({"params": {}}) is None
    rescheduling = KinesisStreamRecordsSensor(task_id="stream_has_records", timeout=5, deferrable=False,
                                              mode="reschedule")
    assert rescheduling.mode == "reschedule" and rescheduling.reschedule

"""The sensor against the local stack: it reads the checkpoints from fakesnow and looks at moto's Kinesis.

Its resume logic and templated arguments are tested offline in tests/unit/test_sensors.py, the trigger
alone (Kinesis only) in tests/unit/test_triggers.py.
"""

from __future__ import annotations

import time

import pytest
from airflow.sdk.exceptions import AirflowRescheduleException, AirflowSkipException, TaskDeferred

from claims_cdc import aws, warehouse
from claims_cdc.sensors import DEFERRAL_GRACE, KinesisStreamRecordsSensor
from claims_cdc.triggers import KinesisRecordsTrigger, checkpoints_to_json

pytestmark = pytest.mark.stack


def sensor(settings, **kwargs) -> KinesisStreamRecordsSensor:
    kwargs.setdefault("timeout", 5)
    kwargs.setdefault("poke_interval", 0.2)
    return KinesisStreamRecordsSensor(task_id="stream_has_records", settings=settings, **kwargs)


def put(settings) -> dict:
    return aws.kinesis_client(settings.aws_conn_id).put_record(StreamName=settings.kinesis_stream, Data=b"{}",
                                                               PartitionKey="c")


def consume(snow, settings, mapping, sent: dict) -> None:
    """Move the sent record's shard checkpoint past it, as a staged batch would (it is "{}": a dead letter)."""
    letter = {"shard_id": sent["ShardId"], "sequence_number": sent["SequenceNumber"], "reason": "not a change",
              "payload": "{}", "payload_base64": "e30=", "arrival_micros": None}
    warehouse.stage_batch(
        snow, settings, mapping, batch_id=f"b-{sent['SequenceNumber']}", dag_run_id="test", records_read=1, rows=[],
        rejected=[letter], shards=[{"shard_id": sent["ShardId"], "parent_shard_ids": [], "start": None,
                              "end": sent["SequenceNumber"], "records": 1, "drained": False}],
    )


def test_poke_reads_positions_from_the_snowflake_checkpoints(settings, mapping, snow, clean_pipeline):
    assert sensor(settings).poke({}) is False
    sent = put(settings)
    assert sensor(settings).poke({}) is True
    consume(snow, settings, mapping, sent)
    assert sensor(settings).poke({}) is False


def test_sensor_defers_with_the_stored_checkpoints_and_the_rendered_timeout(settings, mapping, snow, clean_pipeline):
    consume(snow, settings, mapping, put(settings))
    waiting = sensor(settings, timeout="{{ params.sensor_timeout }}", deferrable=True)
    waiting.timeout = "9"  # as rendered from the run's Param
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        waiting.execute({})

    trigger = deferred.value.trigger
    assert isinstance(trigger, KinesisRecordsTrigger)
    assert trigger.stream_name == settings.kinesis_stream
    assert trigger.checkpoints == checkpoints_to_json(warehouse.read_checkpoints(snow, settings, mapping))
    assert before + 9 <= trigger.deadline <= time.time() + 9
    assert deferred.value.timeout.total_seconds() == 9 + DEFERRAL_GRACE.total_seconds()
    assert deferred.value.method_name == "execute_complete"


def test_the_deferred_trigger_waits_past_consumed_records_and_fires_on_a_new_one(settings, mapping, snow,
                                                                                  clean_pipeline):
    """The trigger it hands over, run as the triggerer would, with no Snowflake connection at all."""
    import asyncio
    import threading

    consume(snow, settings, mapping, put(settings))
    with pytest.raises(TaskDeferred) as deferred:
        sensor(settings, timeout=20, deferrable=True).execute({})
    _, kwargs = deferred.value.trigger.serialize()
    trigger = KinesisRecordsTrigger(**kwargs)

    writer = threading.Timer(1.0, put, args=(settings,))
    writer.start()
    event = asyncio.run(trigger.run().asend(None)).payload
    writer.join()
    assert event["status"] == "records"
    assert event["looks"] > 1  # the consumed record alone did not fire it


def test_sensor_does_not_defer_when_records_are_waiting(settings, clean_pipeline):
    put(settings)
    waiting = sensor(settings, deferrable=True)
    waiting.execute({})  # no TaskDeferred: the run goes on at once


class _FirstTry:
    """The task instance a sensor in reschedule mode asks when it first looked: never, here."""

    def get_first_reschedule_date(self, context):
        return None


def test_sensor_pokes_in_a_worker_when_not_deferrable(settings, clean_pipeline):
    with pytest.raises(AirflowSkipException):  # idle stream: soft_fail turns the timeout into a skip
        sensor(settings, timeout=1, deferrable=False, mode="poke").execute({})
    with pytest.raises(AirflowRescheduleException):  # reschedule mode frees the slot between looks
        sensor(settings, deferrable=False, mode="reschedule").execute({"ti": _FirstTry()})
    put(settings)
    sensor(settings, deferrable=False, mode="poke").execute({})

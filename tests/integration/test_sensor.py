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

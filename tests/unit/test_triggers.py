"""The trigger against in-process moto (``mock_aws``): it needs Kinesis and the AWS connection, nothing else.

Written like the Amazon provider's trigger tests: build the trigger, ``await trigger.run().asend(None)``
for its first event, assert on the event.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time

import pytest

from claims_cdc.kinesis_reader import Checkpoint
from claims_cdc.triggers import KinesisRecordsTrigger, checkpoints_to_json

STREAM = "ClaimsProbeStream"
@pytest.fixture
def kinesis(aws_mock):
    """A two-shard stream in in-process moto, reached through the ``aws_mock`` Airflow connection."""
    import boto3

    client = boto3.client("kinesis", region_name="us-east-1")
    client.create_stream(StreamName=STREAM, ShardCount=2)
    return client


def first_event(trigger: KinesisRecordsTrigger) -> dict:
    async def first():
        return (await trigger.run().asend(None)).payload

    return asyncio.run(first())


def trigger(checkpoints: dict | None = None, seconds: float = 20, stream: str = STREAM) -> KinesisRecordsTrigger:
    return KinesisRecordsTrigger(stream_name=stream, checkpoints=checkpoints or {}, deadline=time.time() + seconds,
                                 aws_conn_id="aws_mock", poke_interval=0.1)


def test_fires_when_a_shard_has_a_record_after_its_checkpoint(kinesis):
    kinesis.put_record(StreamName=STREAM, Data=b"{}", PartitionKey="claim")
    event = first_event(trigger())
    assert event == {"status": "records", "looks": 1}


def test_a_record_at_the_checkpoint_is_not_new(kinesis):
    sent = kinesis.put_record(StreamName=STREAM, Data=b"{}", PartitionKey="claim")
    consumed = {sent["ShardId"]: Checkpoint(sent["ShardId"], sent["SequenceNumber"])}
    event = first_event(trigger(checkpoints_to_json(consumed), seconds=2))
    assert event["status"] == "timeout"
    assert event["looks"] >= 2  # it kept looking until the deadline


def test_a_retired_shard_is_not_looked_at(kinesis):
    sent = kinesis.put_record(StreamName=STREAM, Data=b"{}", PartitionKey="claim")
    retired = {sent["ShardId"]: Checkpoint(sent["ShardId"], None, closed=True)}
    assert first_event(trigger(checkpoints_to_json(retired), seconds=0.3))["status"] == "timeout"


def test_waits_for_a_record_that_arrives_later(kinesis, monkeypatch):
    from claims_cdc import triggers

    looks = []
    look = triggers.has_records

    def look_then_write(*args):
        found = look(*args)
        if not looks:  # the record arrives right after the first look found nothing
            kinesis.put_record(StreamName=STREAM, Data=b"{}", PartitionKey="claim")
        looks.append(found)
        return found

    monkeypatch.setattr(triggers, "has_records", look_then_write)
    event = first_event(trigger())
    assert event == {"status": "records", "looks": 2}
    assert looks == [False, True]


def test_a_missing_stream_is_an_error_event_no_retry_can_fix_naming_the_setting(kinesis):
    event = first_event(trigger(stream="NoSuchStream"))
    assert event["status"] == "error" and event["retry"] is False
    assert "CDC_KINESIS_STREAM" in event["error"] and "'NoSuchStream'" in event["error"]
    assert "ResourceNotFound" in event["error"]


def test_other_failures_are_error_events_the_task_retries(kinesis, monkeypatch):
    from claims_cdc import triggers

    def expired(*_):
        raise RuntimeError("ExpiredToken: the security token expired")

    monkeypatch.setattr(triggers, "has_records", expired)
    event = first_event(trigger())
    assert event["status"] == "error" and "retry" not in event
    assert "ExpiredToken" in event["error"]


def test_serialize_carries_every_constructor_argument(kinesis):
    """The triggerer rebuilds the trigger from serialize(): a forgotten argument would come back as a default."""
    sent = kinesis.put_record(StreamName=STREAM, Data=b"{}", PartitionKey="claim")
    consumed = checkpoints_to_json({sent["ShardId"]: Checkpoint(sent["ShardId"], sent["SequenceNumber"])})
    original = KinesisRecordsTrigger(stream_name=STREAM, checkpoints=consumed, deadline=time.time() + 0.4,
                                     aws_conn_id="aws_mock", poke_interval=0.15)
    path, kwargs = original.serialize()

    assert path == "claims_cdc.triggers.KinesisRecordsTrigger"
    assert set(kwargs) == set(inspect.signature(KinesisRecordsTrigger).parameters)
    json.dumps(kwargs)  # the triggerer stores the arguments: plain JSON types only
    rebuilt = KinesisRecordsTrigger(**kwargs)
    # The rebuilt trigger still knows the record was consumed, and still gives up at the same time.
    event = first_event(rebuilt)
    assert event["status"] == "timeout"
    assert rebuilt.deadline == original.deadline and rebuilt.poke_interval == 0.15


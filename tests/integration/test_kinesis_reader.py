"""Reading shards from checkpoints, against moto's Kinesis server (through the provider's KinesisHook)."""

from __future__ import annotations

import json

import pytest

from claims_cdc import aws
from claims_cdc.kinesis_reader import Checkpoint, has_records, read_batch

pytestmark = pytest.mark.stack


def put(kinesis, stream, key, n=1):
    return [kinesis.put_record(StreamName=stream, Data=json.dumps({"i": i}).encode(), PartitionKey=key)
            for i in range(n)]


def test_has_records_is_false_on_an_empty_stream_and_true_after_a_put(settings, clean_pipeline):
    kinesis = aws.kinesis_client(settings)
    assert has_records(kinesis, settings.kinesis_stream, {}) is False
    put(kinesis, settings.kinesis_stream, "claim-1")
    assert has_records(kinesis, settings.kinesis_stream, {}) is True


def test_has_records_does_not_consume_and_respects_checkpoints(settings, clean_pipeline):
    kinesis = aws.kinesis_client(settings)
    [sent] = put(kinesis, settings.kinesis_stream, "claim-1")
    assert has_records(kinesis, settings.kinesis_stream, {}) is True
    assert has_records(kinesis, settings.kinesis_stream, {}) is True
    done = {sent["ShardId"]: Checkpoint(sent["ShardId"], sent["SequenceNumber"])}
    assert has_records(kinesis, settings.kinesis_stream, done) is False


def test_read_batch_reads_every_shard_after_its_checkpoint(settings, clean_pipeline):
    kinesis = aws.kinesis_client(settings)
    sent = [put(kinesis, settings.kinesis_stream, f"claim-{i}")[0] for i in range(12)]
    shards = {s["ShardId"] for s in sent}
    assert len(shards) == 2, "12 keys should land on both shards"

    first = read_batch(kinesis, settings.kinesis_stream, {}, max_records=100, page_limit=5)
    assert sorted((r.shard_id, r.sequence_number) for r in first.records) == sorted(
        (s["ShardId"], s["SequenceNumber"]) for s in sent)
    checkpoints = {p.shard_id: Checkpoint(p.shard_id, p.end) for p in first.shards}
    assert read_batch(kinesis, settings.kinesis_stream, checkpoints, max_records=100, page_limit=5).records == []

    more = put(kinesis, settings.kinesis_stream, "claim-0", 3)
    second = read_batch(kinesis, settings.kinesis_stream, checkpoints, max_records=100, page_limit=5)
    assert [r.sequence_number for r in second.records] == [m["SequenceNumber"] for m in more]


def test_read_batch_stops_at_the_cap_and_the_rest_waits(settings, clean_pipeline):
    kinesis = aws.kinesis_client(settings)
    put(kinesis, settings.kinesis_stream, "claim-1", 10)
    first = read_batch(kinesis, settings.kinesis_stream, {}, max_records=4, page_limit=100)
    assert len(first.records) == 4
    checkpoints = {p.shard_id: Checkpoint(p.shard_id, p.end) for p in first.shards if p.end}
    rest = read_batch(kinesis, settings.kinesis_stream, checkpoints, max_records=100, page_limit=100)
    assert len(rest.records) == 6
    assert not {r.sequence_number for r in first.records} & {r.sequence_number for r in rest.records}

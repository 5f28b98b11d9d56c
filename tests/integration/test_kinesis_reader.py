"""Reading shards from checkpoints, against moto's Kinesis server (through the provider's KinesisHook)."""

from __future__ import annotations

import json

import pytest

from claims_cdc import aws
from claims_cdc.kinesis_reader import Checkpoint, has_records, readable_shards
from helpers import read_run, read_runs

pytestmark = pytest.mark.stack


def put(kinesis, stream, key, n=1):
    return [kinesis.put_record(StreamName=stream, Data=json.dumps({"i": i}).encode(), PartitionKey=key)
            for i in range(n)]


def test_has_records_is_false_on_an_empty_stream_and_true_after_a_put(settings, clean_pipeline):
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    assert has_records(kinesis, settings.kinesis_stream, {}) is False
    put(kinesis, settings.kinesis_stream, "claim-1")
    assert has_records(kinesis, settings.kinesis_stream, {}) is True


def test_has_records_looks_only_after_each_checkpoint(settings, clean_pipeline):
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    [first] = put(kinesis, settings.kinesis_stream, "claim-1")
    [second] = put(kinesis, settings.kinesis_stream, "claim-1")
    assert first["ShardId"] == second["ShardId"]

    def at(sent):
        return {sent["ShardId"]: Checkpoint(sent["ShardId"], sent["SequenceNumber"])}

    assert has_records(kinesis, settings.kinesis_stream, {}) is True
    assert has_records(kinesis, settings.kinesis_stream, at(first)) is True  # the second is still after it
    assert has_records(kinesis, settings.kinesis_stream, at(second)) is False


def test_a_run_reads_every_shard_after_its_checkpoint(settings, clean_pipeline):
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    sent = [put(kinesis, settings.kinesis_stream, f"claim-{i}")[0] for i in range(12)]
    shards = {s["ShardId"] for s in sent}
    assert len(shards) == 2, "12 keys should land on both shards"

    first = read_run(kinesis, settings.kinesis_stream, {}, max_records=100, page_limit=5)
    assert sorted((r.shard_id, r.sequence_number) for r in first.records) == sorted(
        (s["ShardId"], s["SequenceNumber"]) for s in sent)
    checkpoints = {p.shard_id: Checkpoint(p.shard_id, p.end) for p in first.shards}
    assert read_run(kinesis, settings.kinesis_stream, checkpoints, max_records=100, page_limit=5).records == []

    more = put(kinesis, settings.kinesis_stream, "claim-0", 3)
    second = read_run(kinesis, settings.kinesis_stream, checkpoints, max_records=100, page_limit=5)
    assert [r.sequence_number for r in second.records] == [m["SequenceNumber"] for m in more]


def test_a_run_stops_at_its_share_of_the_cap_and_the_rest_waits(settings, clean_pipeline):
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    put(kinesis, settings.kinesis_stream, "claim-1", 10)
    first = read_run(kinesis, settings.kinesis_stream, {}, max_records=4, page_limit=100)
    assert len(first.records) == 2  # the stream's two shards get 2 each; the other shard is empty
    checkpoints = {p.shard_id: Checkpoint(p.shard_id, p.end) for p in first.shards if p.end}
    rest = read_run(kinesis, settings.kinesis_stream, checkpoints, max_records=100, page_limit=100)
    assert len(rest.records) == 8
    assert not {r.sequence_number for r in first.records} & {r.sequence_number for r in rest.records}


def _open_shards(kinesis, stream):
    shards = kinesis.list_shards(StreamName=stream)["Shards"]
    return sorted((s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]),
                  key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))


def put_at(kinesis, stream, hash_key, n=1):
    return [kinesis.put_record(StreamName=stream, Data=b"{}", PartitionKey="k", ExplicitHashKey=str(hash_key))
            for _ in range(n)]


def test_split_parent_is_read_to_its_end_before_its_children(settings, clean_pipeline):
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    stream = settings.kinesis_stream
    parent = _open_shards(kinesis, stream)[0]
    mid = int(parent["HashKeyRange"]["EndingHashKey"]) // 2
    before = put_at(kinesis, stream, 1, 4)
    kinesis.split_shard(StreamName=stream, ShardToSplit=parent["ShardId"], NewStartingHashKey=str(mid))
    after = put_at(kinesis, stream, 1, 2) + put_at(kinesis, stream, mid + 1, 2)
    children = {a["ShardId"] for a in after}
    assert parent["ShardId"] not in children and len(children) == 2

    # A read that cannot finish the parent does not touch its children.
    partial = read_run(kinesis, stream, {}, max_records=2, page_limit=1)
    assert {r.shard_id for r in partial.records} == {parent["ShardId"]}
    assert not children & {p.shard_id for p in partial.shards}

    full = read_runs(kinesis, stream, {}, max_records=100, page_limit=100)  # the children in a later run
    order = [r.shard_id for r in full.records]
    assert order[:4] == [parent["ShardId"]] * 4 and set(order[4:]) == children
    assert [r.sequence_number for r in full.records[:4]] == [b["SequenceNumber"] for b in before]
    drained = {p.shard_id: p.drained for p in full.shards}
    assert drained[parent["ShardId"]] is True and not any(drained[c] for c in children)

    # Once retired in the checkpoints, the parent is not read again and the sensor ignores it.
    checkpoints = {p.shard_id: Checkpoint(p.shard_id, p.end, closed=p.drained) for p in full.shards}
    assert parent["ShardId"] not in {s["ShardId"] for s in readable_shards(
        kinesis.list_shards(StreamName=stream)["Shards"], checkpoints)}
    assert has_records(kinesis, stream, checkpoints) is False


def test_merged_child_is_read_only_after_both_parents(settings, clean_pipeline):
    kinesis = aws.kinesis_client(settings.aws_conn_id)
    stream = settings.kinesis_stream
    left, right = _open_shards(kinesis, stream)
    put_at(kinesis, stream, 1, 2)
    put_at(kinesis, stream, int(right["HashKeyRange"]["StartingHashKey"]) + 1, 2)
    kinesis.merge_shards(StreamName=stream, ShardToMerge=left["ShardId"], AdjacentShardToMerge=right["ShardId"])
    [late] = put_at(kinesis, stream, 1)
    child = late["ShardId"]
    assert child not in {left["ShardId"], right["ShardId"]}

    full = read_runs(kinesis, stream, {}, max_records=100, page_limit=100)  # the children in a later run
    order = [r.shard_id for r in full.records]
    assert order[-1] == child and set(order[:4]) == {left["ShardId"], right["ShardId"]}

    only_left_done = {left["ShardId"]: Checkpoint(left["ShardId"], None, closed=True)}
    partial = read_run(kinesis, stream, only_left_done, max_records=1, page_limit=1)
    assert child not in {r.shard_id for r in partial.records}

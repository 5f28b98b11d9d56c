"""A run's plan: every shard it may read gets a fair share of the cap (each is read by its own mapped task),
and children wait until their parents are retired. On a scripted multi-shard client."""

from __future__ import annotations

import pytest

from claims_cdc import kinesis_reader
from claims_cdc.kinesis_reader import Checkpoint, plan_shards
from helpers import read_run, read_runs


class Shards:
    """Shards holding sequence numbers; a closed shard has an EndingSequenceNumber and a parent list."""

    class exceptions:
        class ProvisionedThroughputExceededException(Exception):
            pass

        class ExpiredIteratorException(Exception):
            pass

    def __init__(self, shards: dict[str, list[int]], closed=(), parents=None):
        self.records = {shard: [str(r) for r in records] for shard, records in shards.items()}
        self.closed = set(closed)
        self.parents = parents or {}

    def list_shards(self, **_):
        shards = []
        for shard in self.records:
            entry = {"ShardId": shard, "SequenceNumberRange": {"StartingSequenceNumber": "0"}}
            if shard in self.closed:
                entry["SequenceNumberRange"]["EndingSequenceNumber"] = "999999"
            if shard in self.parents:
                entry["ParentShardId"] = self.parents[shard]
            shards.append(entry)
        return {"Shards": shards}

    def get_shard_iterator(self, ShardId, ShardIteratorType, StartingSequenceNumber=None, **_):
        records = self.records[ShardId]
        if ShardIteratorType == "TRIM_HORIZON":
            return {"ShardIterator": f"{ShardId}|0"}
        after = sum(1 for r in records if int(r) <= int(StartingSequenceNumber))
        return {"ShardIterator": f"{ShardId}|{after}"}

    def get_records(self, ShardIterator, Limit):
        shard, start = ShardIterator.split("|")
        records = self.records[shard]
        page = records[int(start): int(start) + Limit]
        rest = len(records) - int(start) - len(page)
        return {"Records": [{"SequenceNumber": s, "Data": b"{}"} for s in page],
                "NextShardIterator": f"{shard}|{int(start) + len(page)}", "MillisBehindLatest": 1000 if rest else 0}


@pytest.fixture(autouse=True)
def no_pacing(monkeypatch):
    monkeypatch.setattr(kinesis_reader.time, "sleep", lambda _seconds: None)


def _per_shard(result) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in result.records:
        counts[record.shard_id] = counts.get(record.shard_id, 0) + 1
    return counts


def test_the_cap_is_split_fairly_not_shard_zero_first():
    client = Shards({f"shard-{i}": list(range(1, 101)) for i in range(4)})
    assert [(t.shard_id, t.share) for t in plan_shards(client, "s", {}, 42)] == [
        ("shard-0", 11), ("shard-1", 11), ("shard-2", 10), ("shard-3", 10)]
    result = read_run(client, "s", {}, max_records=40, page_limit=10_000)
    assert _per_shard(result) == {f"shard-{i}": 10 for i in range(4)}
    assert {s.shard_id: s.end for s in result.shards} == {f"shard-{i}": "10" for i in range(4)}


def test_a_shard_that_caught_up_is_verified_and_one_stopped_at_its_share_is_not():
    client = Shards({"shard-0": [1, 2, 3], "shard-1": list(range(1, 101))})
    result = read_run(client, "s", {}, max_records=20, page_limit=10_000)
    assert _per_shard(result) == {"shard-0": 3, "shard-1": 10}
    verified = {s.shard_id: s.verified_at is not None for s in result.shards}
    assert verified == {"shard-0": True, "shard-1": False}


def test_more_shards_than_the_cap_starves_none():
    client = Shards({f"shard-{i}": [1, 2] for i in range(4)})
    assert [t.share for t in plan_shards(client, "s", {}, 2)] == [1, 1, 1, 1]


def test_children_wait_while_their_parent_is_not_retired():
    client = Shards({"parent": list(range(1, 11)), "child": [20]}, closed={"parent"}, parents={"child": "parent"})
    assert [t.shard_id for t in plan_shards(client, "s", {}, 100)] == ["parent"]
    result = read_run(client, "s", {}, max_records=4, page_limit=10)
    assert _per_shard(result) == {"parent": 4}
    assert not result.shards[0].drained


def test_children_are_read_in_the_run_after_their_parent_drained():
    client = Shards({"parent": [1, 2, 3], "child-a": [10, 11], "child-b": [20]}, closed={"parent"},
                    parents={"child-a": "parent", "child-b": "parent"})
    first = read_run(client, "s", {}, max_records=100, page_limit=10)
    assert [(r.shard_id, r.sequence_number) for r in first.records] == [("parent", "1"), ("parent", "2"),
                                                                        ("parent", "3")]
    assert first.shards[0].drained
    retired = {"parent": Checkpoint("parent", "3", closed=True)}
    assert [t.shard_id for t in plan_shards(client, "s", retired, 100)] == ["child-a", "child-b"]
    everything = read_runs(client, "s", {}, max_records=100, page_limit=10)
    order = [(r.shard_id, r.sequence_number) for r in everything.records]
    assert order[:3] == [("parent", "1"), ("parent", "2"), ("parent", "3")]
    assert sorted(order[3:]) == [("child-a", "10"), ("child-a", "11"), ("child-b", "20")]

"""The reader reads the shards it may read concurrently and splits the run's cap fairly between them; children
still wait for their parents. On a scripted multi-shard client (moto serves one request at a time)."""

from __future__ import annotations

import threading

import pytest

from claims_cdc import kinesis_reader
from claims_cdc.kinesis_reader import read_batch


class Shards:
    """Shards holding sequence numbers; a closed shard has an EndingSequenceNumber and a parent list."""

    class exceptions:
        class ProvisionedThroughputExceededException(Exception):
            pass

        class ExpiredIteratorException(Exception):
            pass

    def __init__(self, shards: dict[str, list[int]], closed=(), parents=None, barrier: threading.Barrier | None = None):
        self.records = {shard: [str(r) for r in records] for shard, records in shards.items()}
        self.closed = set(closed)
        self.parents = parents or {}
        self.barrier = barrier
        self.first_read: set[str] = set()
        self.lock = threading.Lock()

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
        with self.lock:
            first = shard not in self.first_read
            self.first_read.add(shard)
        if first and self.barrier is not None:
            self.barrier.wait(timeout=10)  # passes only when every shard of the wave is being read at once
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


def test_every_readable_shard_is_read_at_the_same_time():
    client = Shards({f"shard-{i}": list(range(1, 6)) for i in range(4)}, barrier=threading.Barrier(4))
    result = read_batch(client, "s", {}, max_records=100, page_limit=10)  # a serial reader would time out
    assert _per_shard(result) == {f"shard-{i}": 5 for i in range(4)}


def test_the_cap_is_split_fairly_not_shard_zero_first():
    client = Shards({f"shard-{i}": list(range(1, 101)) for i in range(4)})
    result = read_batch(client, "s", {}, max_records=40, page_limit=10_000)
    assert _per_shard(result) == {f"shard-{i}": 10 for i in range(4)}
    assert {s.shard_id: s.end for s in result.shards} == {f"shard-{i}": "10" for i in range(4)}


def test_what_a_quiet_shard_leaves_is_shared_among_the_busy_ones():
    client = Shards({"shard-0": [1, 2, 3], "shard-1": list(range(1, 101)), "shard-2": list(range(1, 101)),
                     "shard-3": list(range(1, 101))})
    result = read_batch(client, "s", {}, max_records=40, page_limit=10_000)
    counts = _per_shard(result)
    assert sum(counts.values()) == 40 and counts["shard-0"] == 3
    assert sorted(counts[f"shard-{i}"] for i in (1, 2, 3)) == [12, 12, 13]
    quiet = next(s for s in result.shards if s.shard_id == "shard-0")
    assert quiet.verified_at is not None  # caught up: its position is verified
    assert all(s.verified_at is None for s in result.shards if s.shard_id != "shard-0")  # stopped at the cap


def test_children_are_read_after_their_parent_drained_in_the_same_run():
    client = Shards({"parent": [1, 2, 3], "child-a": [10, 11], "child-b": [20]}, closed={"parent"},
                    parents={"child-a": "parent", "child-b": "parent"})
    result = read_batch(client, "s", {}, max_records=100, page_limit=10)
    order = [(r.shard_id, r.sequence_number) for r in result.records]
    assert order[:3] == [("parent", "1"), ("parent", "2"), ("parent", "3")]
    assert sorted(order[3:]) == [("child-a", "10"), ("child-a", "11"), ("child-b", "20")]
    assert next(s for s in result.shards if s.shard_id == "parent").drained


def test_children_wait_while_their_parent_is_not_drained():
    client = Shards({"parent": list(range(1, 11)), "child": [20]}, closed={"parent"}, parents={"child": "parent"})
    result = read_batch(client, "s", {}, max_records=4, page_limit=10)
    assert _per_shard(result) == {"parent": 4}
